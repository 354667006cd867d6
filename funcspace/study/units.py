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

import torch
from torch import Tensor, nn

__all__ = [
    "CHEAP_KINDS",
    "EXPENSIVE_KINDS",
    "distance_unit",
    "flatness_unit",
    "init_worker",
    "pair_unit",
    "train_unit",
]

#: Path kinds measured for every pair (batched evaluations, no training).
CHEAP_KINDS = ("linear", "aligned", "geodesic")
#: Optimized path kinds, measured only for the pairs the selection picks.
EXPENSIVE_KINDS = ("bent", "curve")


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
    """A fresh network of a ``ModelConfig.to_dict()`` for ``data``, initialized from ``seed``."""
    from funcspace.models import MLP

    d = 1
    for size in data.input_shape:
        d *= int(size)
    return MLP(d, tuple(model_config["hidden"]), data.n_classes, seed=seed)


def _loaded(data: Any, model_config: dict[str, Any], state: dict[str, Tensor]) -> nn.Module:
    net = model(data, model_config, 0)
    net.load_state_dict(state)
    return net


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
        ``"curve"``: a trained Bezier curve), ``a``, ``b`` (state dicts), ``seed`` (of the
        optimized paths' training).

    Returns
    -------
    dict
        ``error`` and ``loss``: each the barrier's ``height``, ``t``, ``peak``, ``ends``,
        ``evaluations``, ``resolution``, ``upper_bound`` (:class:`paths.Barrier`'s pieces);
        ``length`` (in parameters, :func:`paths.euclidean_length` at 33 points); ``seconds``.
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
    if kind == "linear":
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
    settings = Settings(batch_size=evaluation["batch_size"])
    out: dict[str, Any] = {}
    for metric in ("error", "loss"):
        found = barrier(
            path,
            data,
            metric,
            resolution=evaluation["resolution"],
            coarse=evaluation["coarse"],
            settings=settings,
        )
        out[metric] = _barrier_fields(found)
    out["length"] = euclidean_length(path)
    out["seconds"] = time.perf_counter() - started
    return out


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
        copies of one function up to symmetry); ``function_distance``: the fraction of test
        inputs (training inputs without a test split) on which their predictions differ;
        ``split``: which; ``seconds``.
    """
    from funcspace.similarity import class_distance, disagreement

    started = time.perf_counter()
    data = dataset(spec["data"])
    a = _loaded(data, spec["model"], spec["a"])
    b = _loaded(data, spec["model"], spec["b"])
    x = data.train[0][: spec["evaluation"]["align_examples"]]
    split = "test" if data.test is not None else "train"
    return {
        "geodesic_distance": class_distance(a, b, x, "weights"),
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
        multiplicative weight noise (``{"sigmas": [...], "energy": [...]}``); ``evidence``:
        how far to trust it (convergence, residuals, standard errors, products spent);
        ``seconds``.
    """
    from funcspace import flatness
    from funcspace.energy import local_energy

    started = time.perf_counter()
    data = dataset(spec["data"])
    net = _loaded(data, spec["model"], spec["state"])
    batch_size = spec["evaluation"]["batch_size"]
    measure, seed = spec["measure"], spec["seed"]
    if measure == "hessian_eigenvalues":
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
