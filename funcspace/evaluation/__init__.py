"""Batched evaluation: metrics (error and loss by default) of many parameter points of one
architecture.

This is the engine under planes, paths and flatness. Every data batch is read once for all the
points of a chunk, data are moved to the parameters' device once, and nothing of the user's is
copied per point or mutated. Three strategies compute the same numbers:

- ``"loop"``: one ``torch.func.functional_call`` per point (no module copies);
- ``"vmap"``: ``vmap(functional_call)`` over a chunk of points;
- ``"stacked"``: for plain chains of ``Linear`` / ``BatchNorm1d`` / elementwise activations
  (``Flatten`` and ``Dropout`` allowed), hand-stacked matrix products: the first layer is one
  large product of the shared inputs with the chunk's stacked weights, later layers are
  batched products in a (points, features, inputs) layout; a chunk of one point runs plain 2-D
  products, the cheapest loop there is.

``"auto"`` (the rule; the measurements behind its thresholds, on the project's 2-core CPU,
are in ``benchmarks/README.md``, section ``evaluation.py``):

- a chain model runs ``"stacked"`` with ``chunk = clamp(2 MiB // (batch * width * itemsize),
  1, K)``, ``width`` its widest layer: stacking pays while a chunk's activations stay in cache
  (many points on small batches); on large batches the chunk drops to 1, the plain loop of
  2-D products that batching cannot beat on a CPU;
- any other model runs ``"vmap"`` in chunks of 16 when it is traceable by ``torch.fx`` and a
  point's pass on one batch costs under 8 MFLOP (Linear and Conv layers, counted on a one-input
  pass), else ``"loop"``; if vmap cannot run the model, ``"auto"`` logs it and runs the loop;
- on CUDA the stacking budget is 256 MiB and generic models run vmap (not measured here).

:func:`evaluate_affine` evaluates points ``origin + sum_i c_i d_i`` (planes, lines) and uses
that the first layer's pre-activation is affine in the coefficients: ``X W(c)^T + b(c) = (X
W_0^T + b_0) + sum_i c_i (X D_i^T + e_i)``, so each batch pays ``m + 1`` first-layer products
instead of one per point. It saves the first layer's share of the work minus the memory
passes of the combination: little for narrow inputs, much for wide ones (the benchmark
measures both).

BatchNorm: ``"fixed"`` uses each point's running statistics (stacked buffers, or the shared
ones of the template); ``"recalibrate"`` recomputes them per point in train-mode forward
passes over ``recalibration_data`` (the cumulative average over its batches of the batch
means and unbiased variances, as ``torch.optim.swa_utils.update_bn`` does; only BatchNorm
layers run in train mode, Dropout stays off), then evaluates in eval mode. Models are always
evaluated in eval mode.

Tracing the architecture with ``torch.fx`` (the plan behind ``"stacked"``, ``"auto"`` and the
first-layer reuse) costs 2-5 ms for the models of :mod:`funcspace.models`; the functions
trace on every call, and an :class:`Evaluator` bound to a template traces once, for code that
evaluates one architecture many times.

Binary layers: under ``"stacked"``, a bias-free Linear that reads a sign activation
(``canonicalize.Sign``, ``binary.BinarySign``, ``torch.sign``) multiplies in int8 with int32
accumulation (``torch._int_mm``, :mod:`funcspace.evaluation.int8`) where ``Settings.int8``
asks for it (``"auto"``: on CUDA or a CPU with VNNI/AMX int8 dot products; ``"always"``;
``"never"``) and, checked at run time, its inputs and every point's weights are -1, 0 or +1:
the sums are then the float32 ones bit for bit. Anything else runs in float (the first layer,
which reads the data; latent real weights; convolutions; the loop and vmap strategies);
``Evaluation.int8_layers`` names the layers that ran in int8. On the project's AVX2 CPU
``_int_mm`` is 7-35x slower than float32, so ``"auto"`` keeps float there.

How to measure is one frozen :class:`Settings` (metrics, split, batch size, chunk, BatchNorm
handling, recalibration data, strategy, int8): :func:`evaluate` builds one from its keywords, an
:class:`Evaluator` holds one, and the landscape functions, local energy and the layers above
take ``settings=``. Metrics are :class:`funcspace.metrics.Metric` objects (``"error"``,
``"loss"``, ``"mse"``, ``"sign_error"`` or your own). When ``"auto"`` picks vmap and
``torch.func.vmap`` cannot run the model, the engine logs it and runs the loop.

The package's modules, one job each: ``evaluator`` (:class:`Evaluator` and the public
functions), ``settings`` (:class:`Settings`), ``result`` (:class:`Evaluation`), ``points``
(validating networks, affine families and data; the points and buffers served per chunk),
``plan`` (the fx trace of the template), ``int8`` (the exact int8 kernel and where it
pays), ``strategy`` (the contract: the ``Job`` a
strategy runs and the ``Runner`` protocol it implements), ``functional`` (the ``"loop"`` /
``"vmap"`` strategy), ``stacked`` (the ``"stacked"`` strategy) and ``engine`` (the ``"auto"``
rule, batches, chunks and metric sums).
"""

from funcspace.metrics import DEFAULT_METRICS as METRICS

from .evaluator import Evaluator, evaluate, evaluate_affine
from .result import Evaluation
from .settings import INT8_MODES, STRATEGIES, Settings

__all__ = [
    "INT8_MODES",
    "METRICS",
    "STRATEGIES",
    "Evaluation",
    "Evaluator",
    "Settings",
    "evaluate",
    "evaluate_affine",
]
