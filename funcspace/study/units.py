"""The work units of a study: top-level functions of plain data, run in any process.

Each unit takes one ``spec`` dict (configuration sections as their ``to_dict()``, state dicts
as CPU tensors) and returns plain data (numbers, strings, lists, dicts and CPU tensors), so
that it pickles to and from a worker process or a Dask worker. Units never see the store:
the coordinating process (:func:`funcspace.study.run`) reads what they need from it and
writes what they return.

- :func:`train_unit`: one minimizer (an optimizer and a seed): its state dict and errors;
- :func:`pair_unit`: one path kind between two minimizers: its error and loss barriers and
  its length;
- :func:`distance_unit`: how far apart two minimizers are (geodesic distance of their
  symmetry classes, disagreement of their predictions);
- :func:`flatness_unit`: one flatness measure of one minimizer.

Binary models (``model.kind`` ``"binary_mlp"`` or ``"committee"``) train as their binary
training model (latent real weights, :mod:`binary.layers`), and that model's state dict is
what the store keeps; every measurement is made on :func:`binary.export` of it, the plain
network with weights exactly +-1 (the same function). Their paths are Hamming paths
(``"hamming"``: :func:`binary.hamming_barriers`; ``"bent"``: :func:`binary.hamming_bent`),
their geodesic distance the normalized Hamming distance after alignment, their flatness
:func:`binary.local_energy`.

:func:`init_worker` is the initializer of worker processes. Every unit runs on one torch
thread, in whatever process: float sums then do not depend on the thread count, so a study
gives the same numbers in this process, in a pool and on a cluster (parallelism comes from
running units side by side).
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from .config import BINARY_MODEL_KINDS

__all__ = [
    "CHEAP_KINDS",
    "EXPENSIVE_KINDS",
    "HAMMING_ORDERS",
    "bend_training",
    "distance_unit",
    "flatness_unit",
    "init_worker",
    "pair_unit",
    "train_unit",
]

#: Path kinds measured for every pair (batched evaluations, no training).
CHEAP_KINDS = ("linear", "aligned", "geodesic", "hamming")
#: Optimized path kinds, measured only for the pairs the selection picks.
EXPENSIVE_KINDS = ("bent", "curve")
#: Random orders of a ``"hamming"`` path: its barrier, peak and ``t`` are their means.
HAMMING_ORDERS = 8


def init_worker() -> None:
    """Set up a worker process: one torch thread (the workers share the cores)."""
    torch.set_num_threads(1)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """Run the block on one torch thread, then restore the caller's setting."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


_GENERATED = ("mnist1d", "teacher_student", "hidden_manifold")


@functools.lru_cache(maxsize=4)
def _dataset(data_json: str) -> Any:
    from funcspace.data import load

    data = json.loads(data_json)
    # generated sets make n_samples examples; the others take the first n_samples training
    # examples (after a seeded shuffle)
    size = "n_samples" if data["name"] in _GENERATED else "subset"
    options: dict[str, Any] = {size: data["n_samples"], "seed": data["seed"]}
    if data["label_noise"]:
        options["label_noise"] = data["label_noise"]
    return load(data["name"], **options)


def dataset(data: dict[str, Any]) -> Any:
    """The data set of a ``DataConfig.to_dict()`` (cached per process)."""
    return _dataset(json.dumps(data, sort_keys=True))


def model(data: Any, model_config: dict[str, Any], seed: int) -> nn.Module:
    """A fresh network of a ``ModelConfig.to_dict()`` for ``data``, initialized from ``seed``:
    the model that trains (for binary kinds the binary training model, latent weights drawn
    from ``seed``)."""
    d = 1
    for size in data.input_shape:
        d *= int(size)
    hidden = tuple(model_config["hidden"])
    kind = model_config["kind"]
    if kind == "binary_mlp":
        from binary import binary_mlp

        batchnorm = model_config["batchnorm"]
        return binary_mlp(d, hidden, data.n_classes, batchnorm=batchnorm, seed=seed)
    if kind == "committee":
        from binary import committee

        return committee(d, hidden[0], seed=seed)
    from funcspace.models import MLP

    return MLP(d, hidden, data.n_classes, seed=seed)


def _loaded(data: Any, model_config: dict[str, Any], state: dict[str, Tensor]) -> nn.Module:
    """The network measured: the stored model, exported to +-1 weights when binary."""
    net = model(data, model_config, 0)
    net.load_state_dict(state)
    if _binary(model_config):
        from binary import export

        return export(net)
    return net


def _binary(model_config: dict[str, Any]) -> bool:
    return model_config["kind"] in BINARY_MODEL_KINDS


def bend_training() -> str:
    """How the bend of a binary ``"bent"`` path is made: ``"trained"`` once :mod:`binary`
    has ``train_bend``, else ``"untrained"`` (the random Hamming midpoint). Part of the unit
    key of binary bent paths, so that they are measured again when it changes."""
    import binary

    return "trained" if callable(getattr(binary, "train_bend", None)) else "untrained"


def _bend_trainer(data: Any, spec: dict[str, Any]) -> Callable[[nn.Module], Any] | None:
    # HOOK (binary single-bend path): the toroids paper trains the bend to zero training
    # error. binary.train_bend(mid, template, data, optimizer=, epochs=, seed=) does it (the
    # plain +-1 midpoint made a training model like ``template`` again, trained, exported);
    # SGD for budget.path_epochs, as the real-valued bent path. Without it (a binary package
    # that lacks it) the bend is the untrained midpoint, and the edge's ``found["bend"]``
    # says so.
    import binary

    train_bend = getattr(binary, "train_bend", None)
    if not callable(train_bend):
        return None
    return functools.partial(
        train_bend,
        template=model(data, spec["model"], 0),
        data=data,
        optimizer="sgd",
        epochs=spec["budget"]["path_epochs"],
        seed=spec["seed"],
    )


def _single_threaded(fn: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable:
    @functools.wraps(fn)
    def unit(spec: dict[str, Any]) -> dict[str, Any]:
        with one_thread():
            return fn(spec)

    return unit


@_single_threaded
def train_unit(spec: dict[str, Any]) -> dict[str, Any]:
    """Train one minimizer.

    Parameters
    ----------
    spec : dict
        ``data``, ``model`` (the config sections as dicts), ``optimizer`` (a method name),
        ``options`` (its options), ``epochs`` (the most), ``seed`` (initialization and batch
        order).

    Returns
    -------
    dict
        ``state`` (the state dict, CPU tensors), ``epochs`` (run), ``train_error``,
        ``test_error`` (None without a test split), ``seconds``.
    """
    from funcspace.optim import method_class
    from funcspace.training import train

    started = time.perf_counter()
    data = dataset(spec["data"])
    net = model(data, spec["model"], spec["seed"])
    options = method_class(spec["optimizer"]).resolve(dict(spec["options"]))
    result = train(net, data, options, epochs=spec["epochs"], seed=spec["seed"], progress=False)
    record = result.record
    test = float(record.test_error[-1]) if record.test_error else None
    return {
        "state": {k: v.detach().cpu().clone() for k, v in result.model.state_dict().items()},
        "epochs": int(record.epochs),
        "train_error": float(record.train_error[-1]),
        "test_error": test,
        "seconds": time.perf_counter() - started,
    }


def _barrier_fields(barrier: Any) -> dict[str, Any]:
    return {
        "height": float(barrier.height),
        "t": float(barrier.t),
        "peak": float(barrier.peak),
        "ends": [float(e) for e in barrier.ends],
        "evaluations": int(barrier.evaluations),
        "resolution": float(barrier.resolution),
        "upper_bound": float(barrier.upper_bound),
    }


@_single_threaded
def pair_unit(spec: dict[str, Any]) -> dict[str, Any]:
    """Measure one path kind between two minimizers: its training error and loss barriers.

    Parameters
    ----------
    spec : dict
        ``data``, ``model``, ``evaluation``, ``budget`` (the config sections as dicts),
        ``kind`` (``"linear"``: the raw straight line; ``"aligned"``: the straight line to
        ``b`` weight-matched to ``a``; ``"geodesic"``; ``"bent"``: the single-bend path;
        ``"curve"``: a trained Bezier curve; binary models: ``"hamming"``, random Hamming
        paths, and ``"bent"``, the binary single-bend path), ``a``, ``b`` (state dicts),
        ``seed`` (of the optimized paths' training, of the Hamming orders).

    Returns
    -------
    dict
        ``error`` and ``loss``: each the barrier's ``height``, ``t``, ``peak``, ``ends``,
        ``evaluations``, ``resolution``, ``upper_bound`` (:class:`paths.Barrier`'s pieces);
        ``length`` (in parameters, :func:`paths.euclidean_length` at 33 points; for binary
        paths the number of weight flips); ``found`` (binary paths only: how the barrier was
        found, added to the edge's ``found``); ``seconds``.

        ``"hamming"``: :func:`binary.hamming_barriers` over :data:`HAMMING_ORDERS` random
        orders from ``a`` to ``b`` aligned to ``a``, on the study's barrier-search grid;
        ``height``, ``t``, ``peak`` and ``upper_bound`` are the means over the orders (the
        pair's upper bound for the selection is then the mean peak), ``evaluations`` the
        sum, ``length`` the Hamming distance; ``found`` holds the orders, their seeds and the
        spread (``std``, ``min``, ``max``) of the barriers, peaks and ``t``. The loss barrier
        is measured along the same orders. Binary ``"bent"``: :func:`binary.hamming_bent`
        through the random Hamming midpoint, trained by :func:`binary.train_bend` (SGD,
        ``budget.path_epochs``; ``found`` says ``"bend": "trained"``, its epochs, training
        error and whether it reached zero; ``"untrained"`` without ``train_bend``, see
        :func:`bend_training`).
    """
    import canonicalize
    from funcspace.evaluation import Settings
    from paths import barrier, bent, curve, euclidean_length, geodesic, linear

    started = time.perf_counter()
    data = dataset(spec["data"])
    evaluation = spec["evaluation"]
    a = _loaded(data, spec["model"], spec["a"])
    b = _loaded(data, spec["model"], spec["b"])
    x = data.train[0][: evaluation["align_examples"]]
    kind = spec["kind"]
    settings = Settings(batch_size=evaluation["batch_size"])
    found: dict[str, Any] = {}
    if kind == "hamming":
        out = _hamming(a, b, data, x, evaluation, settings, spec["seed"])
        out["seconds"] = time.perf_counter() - started
        return out
    if kind == "bent" and _binary(spec["model"]):
        from binary import hamming_bent

        trainer = _bend_trainer(data, spec)
        path = hamming_bent(
            a, None, b, train=trainer, data=data, example_input=x, seed=spec["seed"]
        )
        found = {
            "bend": "untrained" if trainer is None else "trained",
            "legs": [path.first.length, path.second.length],
        }
        if path.record is not None:  # how far the bend's training got
            found["bend_epochs"] = int(path.record.epochs)
            found["bend_train_error"] = float(path.record.train_error[-1])
            found["bend_zero_error"] = bool(path.record.stopped_at_zero_error)
    elif kind == "linear":
        path = linear(a, b)
    elif kind == "aligned":
        path = linear(a, canonicalize.align(b, a, x, "weights"))
    elif kind == "geodesic":
        path = geodesic(a, b, x, "weights")
    elif kind == "bent":
        # trained as paths.demo does (SGD): larger steps carry the bend off the midpoint
        epochs = spec["budget"]["path_epochs"]
        path = bent(a, b, data, x, optimizer="sgd", epochs=epochs, seed=spec["seed"])
    elif kind == "curve":
        epochs = spec["budget"]["path_epochs"]
        path = curve(a, b, data, example_input=x, epochs=epochs, seed=spec["seed"], progress=False)
    else:  # pragma: no cover - the config admits only the kinds above
        raise ValueError(f"unknown path kind {kind!r}")
    out: dict[str, Any] = {}
    for metric in ("error", "loss"):
        measured = barrier(
            path,
            data,
            metric,
            resolution=evaluation["resolution"],
            coarse=evaluation["coarse"],
            settings=settings,
        )
        out[metric] = _barrier_fields(measured)
    if found:  # a binary path: its length is the number of flips
        out["length"] = int(path.length)
        out["found"] = found
    else:
        out["length"] = euclidean_length(path)
    out["seconds"] = time.perf_counter() - started
    return out


def _hamming(
    a: nn.Module,
    b: nn.Module,
    data: Any,
    x: Tensor,
    evaluation: dict[str, Any],
    settings: Any,
    seed: int,
) -> dict[str, Any]:
    """The ``"hamming"`` path kind: the mean barriers over random Hamming orders."""
    from binary import binary_weights, hamming_barriers

    measured = {
        metric: hamming_barriers(
            a,
            b,
            data,
            HAMMING_ORDERS,
            seed=seed,
            metric=metric,
            example_input=x,
            resolution=evaluation["resolution"],
            coarse=evaluation["coarse"],
            settings=settings,
        )
        for metric in ("error", "loss")
    }
    out: dict[str, Any] = {}
    spread: dict[str, Any] = {}
    for metric, found in measured.items():
        ts = np.array([m.t for m in found.barriers])
        out[metric] = {
            "height": float(found.mean),
            "t": float(ts.mean()),
            "peak": float(found.peak_mean),
            "ends": [float(e) for e in found.barriers[0].ends],
            "evaluations": int(sum(m.evaluations for m in found.barriers)),
            "resolution": float(found.barriers[0].resolution),
            "upper_bound": float(np.mean([m.upper_bound for m in found.barriers])),
        }
        spread[f"{metric}_barrier"] = _spread(found.heights)
        spread[f"{metric}_peak"] = _spread(found.peaks)
        if metric == "error":
            spread["t"] = _spread(ts)
    error = measured["error"]
    out["length"] = int(error.distance)
    out["found"] = {
        "statistic": f"mean over {HAMMING_ORDERS} random Hamming orders",
        "orders": HAMMING_ORDERS,
        "seeds": list(error.seeds),
        "spread": spread,
        "hamming_distance": int(error.distance),
        "binary_weights": sum(a.get_parameter(n).numel() for n in binary_weights(a)),
    }
    return out


def _spread(values: Any) -> dict[str, float]:
    values = np.asarray(values, dtype=np.float64)
    return {"std": float(values.std()), "min": float(values.min()), "max": float(values.max())}


@_single_threaded
def distance_unit(spec: dict[str, Any]) -> dict[str, Any]:
    """How far apart two minimizers are.

    Parameters
    ----------
    spec : dict
        ``data``, ``model``, ``evaluation`` (the config sections as dicts), ``a``, ``b``
        (state dicts).

    Returns
    -------
    dict
        ``geodesic_distance``: the distance of their symmetry classes on the torus
        (:func:`funcspace.similarity.class_distance`, ``b`` weight-matched to ``a``; 0 for two
        copies of one function up to symmetry); for binary networks the normalized Hamming
        distance after alignment (:func:`binary.hamming_distance`'s ``fraction``, in
        ``[0, 1]``: the length of the binary geodesic, a random Hamming path, over the number
        of binary weights; 0 for copies), with ``hamming_distance`` (the count) and
        ``binary_weights`` beside it; ``function_distance``: the fraction of test inputs
        (training inputs without a test split) on which their predictions differ; ``split``:
        which; ``seconds``.
    """
    from funcspace.similarity import class_distance, disagreement

    started = time.perf_counter()
    data = dataset(spec["data"])
    a = _loaded(data, spec["model"], spec["a"])
    b = _loaded(data, spec["model"], spec["b"])
    x = data.train[0][: spec["evaluation"]["align_examples"]]
    split = "test" if data.test is not None else "train"
    out: dict[str, Any] = {}
    if _binary(spec["model"]):
        from binary import hamming_distance

        hamming = hamming_distance(a, b, x)
        out["geodesic_distance"] = float(hamming.fraction)
        out["hamming_distance"] = int(hamming.count)
        out["binary_weights"] = int(hamming.total)
    else:
        out["geodesic_distance"] = class_distance(a, b, x, "weights")
    return {
        **out,
        "function_distance": disagreement(a, b, data, split=split),
        "split": split,
        "seconds": time.perf_counter() - started,
    }


@_single_threaded
def flatness_unit(spec: dict[str, Any]) -> dict[str, Any]:
    """One flatness measure of one minimizer, on its training data.

    Parameters
    ----------
    spec : dict
        ``data``, ``model``, ``evaluation`` (the config sections as dicts), ``state`` (a state
        dict), ``measure`` (one of ``funcspace.study.config.FLATNESS_MEASURES``), ``seed``.

    Returns
    -------
    dict
        ``value``: what the map shows (JSON data): ``hessian_eigenvalues``, the largest
        eigenvalue of the loss Hessian (Lanczos); ``hessian_trace``, its trace (Krylov
        estimate); ``hessian_spectrum``, the eigenvalue density (``{"grid": [...],
        "density": [...]}``, 101 points); ``local_energy``, the training-error increase under
        multiplicative weight noise (``{"sigmas": [...], "energy": [...]}``); for binary
        networks (``local_energy`` only) the training-error increase when a fraction of the
        +-1 weights is flipped (:func:`binary.local_energy` at its default fractions,
        ``{"fractions": [...], "energy": [...]}``); ``evidence``: how far to trust it
        (convergence, residuals, standard errors, products spent); ``seconds``.
    """
    from funcspace import flatness
    from funcspace.energy import local_energy

    started = time.perf_counter()
    data = dataset(spec["data"])
    net = _loaded(data, spec["model"], spec["state"])
    batch_size = spec["evaluation"]["batch_size"]
    measure, seed = spec["measure"], spec["seed"]
    if _binary(spec["model"]):
        value, evidence = _binary_flatness(net, data, measure, seed, batch_size)
    elif measure == "hessian_eigenvalues":
        eig = flatness.hessian_eigenvalues(net, data, k=1, batch_size=batch_size, seed=seed)
        value: Any = float(eig.values[0])
        evidence = {
            "converged": bool(eig.converged),
            "residual": float(eig.residuals[0]),
            "hvps": int(eig.hvps),
        }
    elif measure == "hessian_trace":
        trace = flatness.hessian_trace(net, data, batch_size=batch_size, seed=seed)
        value = float(trace.estimate)
        spread = float(trace.std_error)
        evidence = {"std_error": spread if math.isfinite(spread) else None, "hvps": trace.hvps}
    elif measure == "hessian_spectrum":
        density = flatness.hessian_spectrum(net, data, batch_size=batch_size, seed=seed, grid=101)
        value = {
            "grid": [float(v) for v in density.grid],
            "density": [float(v) for v in density.density],
        }
        evidence = {"sigma": float(density.sigma), "hvps": int(density.hvps)}
    elif measure == "local_energy":
        from funcspace.evaluation import Settings

        curve = local_energy(net, data, seed=seed, settings=Settings(batch_size=batch_size))
        value = {
            "sigmas": [float(v) for v in curve.sigmas],
            "energy": [float(v) for v in curve.mean["error"]],
        }
        evidence = {"std": [float(v) for v in curve.std["error"]], "samples": 100}
    else:  # pragma: no cover - the config admits only the measures above
        raise ValueError(f"unknown flatness measure {measure!r}")
    return {"value": value, "evidence": evidence, "seconds": time.perf_counter() - started}


def _binary_flatness(
    net: nn.Module, data: Any, measure: str, seed: int, batch_size: int
) -> tuple[Any, dict[str, Any]]:
    from binary import local_energy
    from funcspace.evaluation import Settings

    if measure != "local_energy":  # pragma: no cover - the config admits only local_energy
        raise ValueError(f"flatness measure {measure!r} is not defined for binary networks")
    settings = Settings(batch_size=batch_size, metrics=("error",))
    curve = local_energy(net, data, seed=seed, settings=settings)
    value = {
        "fractions": [float(v) for v in curve.sigmas],
        "energy": [float(v) for v in curve.mean["error"]],
    }
    evidence = {
        "std": [float(v) for v in curve.std["error"]],
        "flips": [int(v) for v in curve.flips],
        "samples": int(curve.samples),
        "binary_weights": int(curve.total),
    }
    return value, evidence
