"""Training methods that find minimizers of different flatness, chosen by name in ``train``.

Each method is a small class that owns its network(s) and takes one epoch of steps at a time;
:func:`funcspace.training.train` builds it, evaluates its :attr:`Method.model` after every epoch
and decides when to stop. Names (see :data:`METHODS`):

``"sgd"``
    Nesterov momentum 0.9, learning rate 0.02 cosine-annealed over the epoch budget: the
    toroids paper's standard minimizers.
``"rsgd"``
    Replicated SGD (:class:`ReplicatedSGD`): 3 replicas started from independent
    initializations, each on its own shuffled batches, pulled toward their center by a coupling
    that starts at a tenth of the data loss and grows 1e4-fold (:class:`Balanced`); the center
    is the result, flatter than SGD's minimizer on digits (see the class).
``"adv"``
    Adversarial initialization (Liu et al. 2020): pre-train on a copy of the training set with
    random labels and 10% of the inputs zeroed, then SGD without momentum (sharp minima).
``"adam"``, ``"sam"`` (sharpness-aware minimization, Foret et al. 2021), ``"entropy_sgd"``
    (Chaudhari et al. 2017: an inner Langevin loop estimates the local-entropy gradient).

Each method's options are a frozen dataclass validated when built (:class:`SGDOptions`,
:class:`ReplicatedSGDOptions`, ...): ``train(model, data, optimizer=SGDOptions(lr=0.05))``; a
name alone takes the method's defaults.

Every method draws its randomness from the run's generators (:class:`Context`), never from
the global RNG, so a run is a function of its seed.

Modules: ``base`` (the run's :class:`Context`, the loss, :class:`Method`), ``checks`` (option
validation), ``sgd`` (SGD, Adam), ``adversarial``, ``sam``, ``entropy`` (entropy-SGD),
``coupling`` (schedules of replicated SGD), ``replicated`` and ``registry`` (:data:`METHODS`).
"""

from __future__ import annotations

from funcspace.optim.adversarial import Adversarial, AdversarialOptions
from funcspace.optim.base import SCHEDULES, Context, Method, Options, error_and_loss, loss_of
from funcspace.optim.coupling import Balanced, Coupling, Gated, Geometric
from funcspace.optim.entropy import EntropySGD, EntropySGDOptions
from funcspace.optim.registry import METHODS, method_class
from funcspace.optim.replicated import ReplicatedSGD, ReplicatedSGDOptions
from funcspace.optim.sam import SAM, SAMOptions
from funcspace.optim.sgd import SGD, Adam, AdamOptions, SGDOptions

__all__ = [
    "METHODS",
    "SAM",
    "SCHEDULES",
    "SGD",
    "Adam",
    "AdamOptions",
    "Adversarial",
    "AdversarialOptions",
    "Balanced",
    "Context",
    "Coupling",
    "EntropySGD",
    "EntropySGDOptions",
    "Gated",
    "Geometric",
    "Method",
    "Options",
    "ReplicatedSGD",
    "ReplicatedSGDOptions",
    "SAMOptions",
    "SGDOptions",
    "error_and_loss",
    "loss_of",
    "method_class",
]
