"""What a connectivity study computes: :class:`StudyConfig`, from Python, a dict or a TOML file.

A study is: a data set (:class:`DataConfig`), a model (:class:`ModelConfig`), optimizers with
their seeds and options (:class:`OptimizerConfig`), the path kinds measured between minima,
the flatness measures of each minimum, evaluation settings (:class:`EvaluationConfig`) and a
budget for the optimized paths (:class:`BudgetConfig`). ``StudyConfig()`` is the complete
default study: MNIST-1D (4000 samples), a ReLU MLP (128, 128), two minima each of SGD,
replicated SGD and the adversarial initialization with the learning rates of
``paths.demo``, four path kinds per pair.

Binary models (``model.kind`` in :data:`BINARY_MODEL_KINDS`: ``"binary_mlp"``,
``"committee"``, from :mod:`binary`) take their own path kinds and flatness measures
(:data:`BINARY_PATH_KINDS`, :data:`BINARY_FLATNESS_MEASURES`): their points must stay +-1
networks, and their loss is piecewise constant in the weights. Without ``paths`` and
``flatness`` a study takes the defaults of its model (:data:`DEFAULT_PATHS`,
:data:`DEFAULT_FLATNESS`).

Two keys identify a configuration:

- :meth:`StudyConfig.key`: the sha256 of its canonical JSON (every field; the same in every
  process and session);
- compatibility (:meth:`StudyConfig.compatible_with`, :meth:`StudyConfig.incompatibilities`):
  whether a store made with one configuration may be continued with another. The *extent* of a
  study may change: seeds and optimizers added or removed, path kinds and flatness measures
  added or removed, the evaluation batch size, the optimized-path budget (``max_pairs``,
  ``tolerance``). Everything that changes what a stored result means may not: the data, the
  model, the options and epochs of an optimizer present in both, the evaluation settings other
  than the batch size, and the training epochs of optimized paths.

:func:`unit_key` gives the content-hash key of a work unit from its inputs (plain values).

Example
-------
>>> config = StudyConfig.from_dict({"data": {"n_samples": 1000}, "paths": ["linear"]})
>>> config.data.n_samples, config.paths, [o.name for o in config.optimizers]
(1000, ('linear',), ['sgd', 'rsgd', 'adv'])
>>> config.compatible_with(StudyConfig.from_dict({"data": {"n_samples": 1000}}))
True
>>> StudyConfig().incompatibilities(config)
('data.n_samples: 4000 != 1000',)
>>> unit_key("train", optimizer="sgd", seed=0)[:6]
'train:'
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from funcspace.errors import FuncspaceError

__all__ = [
    "BINARY_FLATNESS_MEASURES",
    "BINARY_MODEL_KINDS",
    "BINARY_PATH_KINDS",
    "DEFAULT_FLATNESS",
    "DEFAULT_PATHS",
    "FLATNESS_MEASURES",
    "MODEL_KINDS",
    "PATH_KINDS",
    "TWO_CLASS_DATA",
    "BudgetConfig",
    "ConfigError",
    "DataConfig",
    "EvaluationConfig",
    "ModelConfig",
    "OptimizerConfig",
    "StudyConfig",
    "unit_key",
]

#: Path kinds a study can measure: the cheap batched ones, then the optimized ones.
PATH_KINDS = ("linear", "aligned", "geodesic", "hamming", "bent", "curve")
#: Flatness measures (the functions of :mod:`funcspace.flatness`; :func:`binary.local_energy`
#: for binary models).
FLATNESS_MEASURES = ("hessian_eigenvalues", "hessian_trace", "hessian_spectrum", "local_energy")
#: ``"mlp"``: a ReLU MLP; ``"binary_mlp"``: :func:`binary.binary_mlp`; ``"committee"``: the
#: fully connected committee machine of :func:`binary.committee` (two-class data).
MODEL_KINDS = ("mlp", "binary_mlp", "committee")
#: The models with binary weights and activations.
BINARY_MODEL_KINDS = ("binary_mlp", "committee")
#: Path kinds between binary networks: every point of a Hamming path is a +-1 network (the
#: straight, aligned and geodesic lines and the Bezier curve leave the binary weights).
BINARY_PATH_KINDS = ("hamming", "bent")
#: Flatness measures of binary networks: the Hessian of a piecewise-constant loss is zero
#: almost everywhere, so only the local energy (weights flipped) is defined.
BINARY_FLATNESS_MEASURES = ("local_energy",)
#: The path kinds and flatness measures of a study that names none, by model.
DEFAULT_PATHS = MappingProxyType(
    {"real": ("linear", "aligned", "geodesic", "bent"), "binary": ("hamming", "bent")}
)
DEFAULT_FLATNESS = MappingProxyType(
    {"real": ("hessian_eigenvalues", "hessian_trace"), "binary": ("local_energy",)}
)
#: The data sets with two classes, which a committee machine needs.
TWO_CLASS_DATA = ("hidden_manifold",)
# Hidden widths of a model that names none.
_DEFAULT_HIDDEN = {"mlp": (128, 128), "binary_mlp": (128, 128), "committee": (3,)}
#: Bumped when the meaning of a field changes, so that old keys no longer match.
CONFIG_VERSION = 1

_UNIT_KIND = re.compile(r"[a-z][a-z0-9_]*\Z")


class ConfigError(FuncspaceError):
    """A study configuration that is malformed: the message names the field and what is allowed."""


# ----------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class DataConfig:
    """The data set of a study (see :func:`funcspace.data.load`).

    Attributes
    ----------
    name : str
        One of :func:`funcspace.data.available` (default ``"mnist1d"``).
    n_samples : int
        Examples generated or used (default 4000).
    label_noise : float
        Fraction of training labels replaced by another class, in ``[0, 1)`` (default 0).
    seed : int
        Seeds the data set (default 0).
    """

    name: str = "mnist1d"
    n_samples: int = 4000
    label_noise: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        from funcspace.data import available

        _choice("data.name", self.name, available())
        _integer("data.n_samples", self.n_samples, minimum=1)
        _set(
            self,
            "label_noise",
            _real("data.label_noise", self.label_noise, low=0, high=1, closed="[)"),
        )
        _integer("data.seed", self.seed, minimum=0)

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class ModelConfig:
    """The network trained.

    Attributes
    ----------
    kind : str
        One of ``MODEL_KINDS``: ``"mlp"`` (a ReLU MLP, the default), ``"binary_mlp"``
        (:func:`binary.binary_mlp`: binary weights and sign activations, a binary output
        layer) or ``"committee"`` (:func:`binary.committee`, fully connected, the sum of the
        hidden signs read out as two classes: two-class data only).
    hidden : tuple of int
        Hidden widths; None (the default) gives the kind's: (128, 128) for the MLPs, (3,) for
        the committee. A committee takes one odd width, its number of hidden units K; a
        binary MLP at least one layer.
    batchnorm : bool or None
        ``"binary_mlp"`` only: a BatchNorm before each sign (BinaryNet's; None, the default,
        means True). Left out of :meth:`to_dict` for the other kinds, so their keys are those
        of a configuration without the field.
    """

    kind: str = "mlp"
    hidden: tuple[int, ...] | None = None
    batchnorm: bool | None = None

    def __post_init__(self) -> None:
        _choice("model.kind", self.kind, MODEL_KINDS)
        if self.hidden is None:
            _set(self, "hidden", _DEFAULT_HIDDEN[self.kind])
        hidden = _sequence("model.hidden", self.hidden, allow_empty=True)
        for i, width in enumerate(hidden):
            _integer(f"model.hidden[{i}]", width, minimum=1)
        if self.kind == "binary_mlp" and not hidden:
            raise ConfigError(
                "model.hidden is empty; a binary_mlp needs at least one hidden layer "
                "(give hidden = [128, 128], ...)"
            )
        if self.kind == "committee" and (len(hidden) != 1 or hidden[0] % 2 == 0):
            raise ConfigError(
                f"model.hidden {list(hidden)}: a committee has one layer of K hidden units, K "
                "odd so that the vote is never tied; give hidden = [K] (e.g. [3])"
            )
        _set(self, "hidden", hidden)
        if self.kind == "binary_mlp":
            batchnorm = True if self.batchnorm is None else self.batchnorm
            if not isinstance(batchnorm, bool):
                raise ConfigError(
                    f"model.batchnorm must be true or false, got {_type(batchnorm)} {batchnorm!r}"
                )
            _set(self, "batchnorm", batchnorm)
        elif self.batchnorm is not None:
            raise ConfigError(
                f"model.batchnorm applies to kind 'binary_mlp' only, not {self.kind!r}; leave "
                "it out"
            )

    @property
    def binary(self) -> bool:
        """Whether the model has binary weights and activations (``BINARY_MODEL_KINDS``)."""
        return self.kind in BINARY_MODEL_KINDS

    def to_dict(self) -> dict[str, Any]:
        """Plain data (``batchnorm`` for a binary MLP only)."""
        out: dict[str, Any] = {"kind": self.kind, "hidden": list(self.hidden)}
        if self.kind == "binary_mlp":
            out["batchnorm"] = self.batchnorm
        return out


@dataclass(frozen=True)
class OptimizerConfig:
    """One optimizer of a study: a minimum is trained for each seed.

    Attributes
    ----------
    name : str
        A method of :data:`funcspace.optim.METHODS` (``"sgd"``, ``"rsgd"``, ``"adv"``, ...).
    seeds : tuple of int
        One minimum per seed (initialization and batch order); distinct, not empty.
    epochs : int
        The most epochs of training (training stops at zero training error).
    options : mapping of str -> plain value
        The method's options (``{"lr": 0.1}``), checked against its options class; plain
        values only (str, int, float, bool or lists of them), so that they fit in TOML. Kept
        read-only.
    """

    name: str
    seeds: tuple[int, ...] = (0, 1)
    epochs: int = 100
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        from funcspace.optim import METHODS, method_class

        _choice("optimizer name", self.name, sorted(METHODS))
        where = f"optimizers[{self.name!r}]"
        seeds = _sequence(f"{where}.seeds", self.seeds)
        for i, seed in enumerate(seeds):
            _integer(f"{where}.seeds[{i}]", seed, minimum=0)
        if len(set(seeds)) != len(seeds):
            raise ConfigError(f"{where}.seeds {list(seeds)} repeats a seed; give each seed once")
        _integer(f"{where}.epochs", self.epochs, minimum=1)
        if not isinstance(self.options, Mapping):
            raise ConfigError(f"{where}.options must be a table of option names to values")
        options = {}
        for key, value in self.options.items():
            if not isinstance(key, str):
                raise ConfigError(f"{where}.options: option names must be strings, got {key!r}")
            options[key] = _option_value(f"{where}.options.{key}", value)
        try:
            method_class(self.name).resolve(dict(options))
        except FuncspaceError as e:
            raise ConfigError(f"{where}.options: {e}") from e
        _set(self, "seeds", seeds)
        _set(self, "options", MappingProxyType(options))

    def to_dict(self) -> dict[str, Any]:
        """Plain data (options as a dict, lists for tuples)."""
        return {
            "name": self.name,
            "seeds": list(self.seeds),
            "epochs": self.epochs,
            "options": _thaw(dict(self.options)),
        }


@dataclass(frozen=True)
class EvaluationConfig:
    """How minima and paths are evaluated.

    Attributes
    ----------
    batch_size : int
        Examples per evaluation batch (memory only: results do not depend on it).
    resolution : float
        Barrier search resolution in ``t`` (a power of one half, default 1/256).
    coarse : float
        First grid of the barrier search (a power of one half, not finer than
        ``resolution``; default 1/32).
    align_examples : int
        Training examples used to align networks and build geodesics (default 512).
    """

    batch_size: int = 4096
    resolution: float = 1 / 256
    coarse: float = 1 / 32
    align_examples: int = 512

    def __post_init__(self) -> None:
        _integer("evaluation.batch_size", self.batch_size, minimum=1)
        for name in ("resolution", "coarse"):
            value = _real(f"evaluation.{name}", getattr(self, name), low=0, high=1, closed="(]")
            if 2.0 ** round(math.log2(value)) != value:
                raise ConfigError(f"evaluation.{name} must be a power of one half, got {value}")
            _set(self, name, value)
        if self.coarse < self.resolution:
            raise ConfigError(
                f"evaluation.coarse ({self.coarse}) is finer than evaluation.resolution "
                f"({self.resolution}); make it at least as coarse"
            )
        _integer("evaluation.align_examples", self.align_examples, minimum=1)

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class BudgetConfig:
    """The budget of optimized paths (``"bent"``, ``"curve"``), chosen by
    :func:`funcspace.study.select`.

    Attributes
    ----------
    max_pairs : int or None
        The most pairs given an optimized path (None: as many as can change the minimax tree).
    tolerance : float
        The training error below which two minima count as connected (default 0.02): a pair
        already joined by a chain of paths peaking within ``tolerance`` of the pair's lower
        bound (the higher of its ends' training errors) gets no optimized path, and the
        minimax barriers are exact to within it (``funcspace.study.selection``). Minima at
        zero training error have lower bound 0, so at ``tolerance = 0`` every pair is
        measured; 0.02 is 2% of the training set.
    path_epochs : int
        Training epochs of each optimized path (default 100, as ``paths.demo``).
    """

    max_pairs: int | None = None
    tolerance: float = 0.02
    path_epochs: int = 100

    def __post_init__(self) -> None:
        if self.max_pairs is not None:
            _integer("budget.max_pairs", self.max_pairs, minimum=0)
        _set(
            self,
            "tolerance",
            _real("budget.tolerance", self.tolerance, low=0, high=math.inf, closed="[)"),
        )
        _integer("budget.path_epochs", self.path_epochs, minimum=1)

    def to_dict(self) -> dict[str, Any]:
        """Plain data."""
        return dataclasses.asdict(self)


def _default_optimizers() -> tuple[OptimizerConfig, ...]:
    # paths.demo's settings and seeds: larger steps than the paper's so that these small MLPs
    # reach zero training error in tens of epochs; every minimum has its own seed.
    return (
        OptimizerConfig("sgd", seeds=(0, 1), options={"lr": 0.1}),
        OptimizerConfig("rsgd", seeds=(2, 3), options={"lr": 0.1}),
        OptimizerConfig("adv", seeds=(4, 5), options={"lr": 0.3, "adv_epochs": 20}),
    )


_SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "evaluation": EvaluationConfig,
    "budget": BudgetConfig,
}


# ----------------------------------------------------------------------------- the study


@dataclass(frozen=True)
class StudyConfig:
    """A connectivity study: what to train, what to measure, how (all fields have defaults).

    Attributes
    ----------
    data : DataConfig
    model : ModelConfig
    optimizers : tuple of OptimizerConfig
        Distinct names, not empty (default SGD, RSGD, ADV with two seeds each).
    paths : tuple of str
        Path kinds measured between minima, from ``PATH_KINDS``; for binary models from
        ``BINARY_PATH_KINDS``. None (the default): the model's ``DEFAULT_PATHS`` (linear,
        aligned, geodesic, bent; hamming, bent for binary models).
    flatness : tuple of str
        Flatness measures of each minimum, from ``FLATNESS_MEASURES`` (may be empty); for
        binary models from ``BINARY_FLATNESS_MEASURES``. None (the default): the model's
        ``DEFAULT_FLATNESS`` (the top Hessian eigenvalue and the trace; the local energy
        for binary models).
    evaluation : EvaluationConfig
    budget : BudgetConfig

    Raises
    ------
    ConfigError
        For a wrong type, an empty list, a repeated or unknown name, a path kind or flatness
        measure the model does not take, or a committee on data that are not two-class; the
        message names the field and what is allowed.

    Example
    -------
    >>> config = StudyConfig(paths=("linear", "geodesic"), flatness=())
    >>> StudyConfig.from_dict(config.to_dict()) == config
    True
    >>> len(config.key())
    64
    """

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizers: tuple[OptimizerConfig, ...] = field(default_factory=_default_optimizers)
    paths: tuple[str, ...] | None = None
    flatness: tuple[str, ...] | None = None
    evaluation: EvaluationConfig = field(default_factory=EvaluationConfig)
    budget: BudgetConfig = field(default_factory=BudgetConfig)

    def __post_init__(self) -> None:
        for name, cls in _SECTIONS.items():
            if not isinstance(getattr(self, name), cls):
                raise ConfigError(
                    f"{name} must be a {cls.__name__}, got {_type(getattr(self, name))}"
                )
        optimizers = _sequence("optimizers", self.optimizers)
        for i, o in enumerate(optimizers):
            if not isinstance(o, OptimizerConfig):
                raise ConfigError(f"optimizers[{i}] must be an OptimizerConfig, got {_type(o)}")
        _distinct("optimizers", [o.name for o in optimizers])
        family = "binary" if self.model.binary else "real"
        paths = DEFAULT_PATHS[family] if self.paths is None else self.paths
        flatness = DEFAULT_FLATNESS[family] if self.flatness is None else self.flatness
        paths = _sequence("paths", paths)
        flatness = _sequence("flatness", flatness, allow_empty=True)
        for label, values, allowed in (
            ("paths", paths, PATH_KINDS),
            ("flatness", flatness, FLATNESS_MEASURES),
        ):
            for i, value in enumerate(values):
                _choice(f"{label}[{i}]", value, allowed)
            _distinct(label, values)
        _check_model_family(self.model, self.data, paths, flatness)
        _set(self, "optimizers", optimizers)
        _set(self, "paths", paths)
        _set(self, "flatness", flatness)

    # ------------------------------------------------------------------ conversions

    def to_dict(self) -> dict[str, Any]:
        """Plain data (lists, dicts, numbers, strings; ``max_pairs`` may be None), accepted by
        :meth:`from_dict`."""
        return {
            "data": self.data.to_dict(),
            "model": self.model.to_dict(),
            "optimizers": [o.to_dict() for o in self.optimizers],
            "paths": list(self.paths),
            "flatness": list(self.flatness),
            "evaluation": self.evaluation.to_dict(),
            "budget": self.budget.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> StudyConfig:
        """The configuration from plain data (:meth:`to_dict`'s form, or a parsed TOML file);
        missing sections and fields take their defaults (missing ``optimizers``: the default
        three).

        Raises
        ------
        ConfigError
            For an unknown section or field (the message lists the allowed ones), a wrong type
            or value.
        """
        top = _table("study configuration", data, [f.name for f in dataclasses.fields(cls)])
        kwargs: dict[str, Any] = {}
        for name, section in _SECTIONS.items():
            if name in top:
                allowed = [f.name for f in dataclasses.fields(section)]
                kwargs[name] = section(**_table(name, top[name], allowed))
        if "optimizers" in top:
            entries = top["optimizers"]
            if not isinstance(entries, Sequence) or isinstance(entries, str):
                raise ConfigError(f"optimizers must be a list of tables, got {_type(entries)}")
            allowed = [f.name for f in dataclasses.fields(OptimizerConfig)]
            optimizers = []
            for i, entry in enumerate(entries):
                fields_ = _table(f"optimizers[{i}]", entry, allowed)
                if "name" not in fields_:
                    raise ConfigError(f'optimizers[{i}] has no name; give name = "sgd", ...')
                optimizers.append(OptimizerConfig(**fields_))
            kwargs["optimizers"] = tuple(optimizers)
        for name in ("paths", "flatness"):
            if name in top:
                kwargs[name] = top[name]
        return cls(**kwargs)

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> StudyConfig:
        """The configuration in a TOML file (tables ``[data]``, ``[model]``, ``[[optimizers]]``,
        ``[evaluation]``, ``[budget]``; top-level ``paths``, ``flatness``).

        Raises
        ------
        ConfigError
            For a missing or unparsable file (naming it) or a malformed configuration; on
            Python 3.10 (no ``tomllib``), saying to use :meth:`from_dict`.

        Example
        -------
        >>> import pathlib, tempfile
        >>> file = pathlib.Path(tempfile.mkdtemp()) / "study.toml"
        >>> _ = file.write_text('paths = ["linear"]\\n[data]\\nn_samples = 500\\n')
        >>> StudyConfig.from_toml(file).data.n_samples
        500
        """
        return cls.from_dict(_parse_toml(path))

    def to_toml(self) -> str:
        """The configuration as TOML text that :meth:`from_toml` reads back equal
        (``max_pairs = None`` is left out: TOML has no null)."""
        d = self.to_dict()
        lines = [f"paths = {_toml(d['paths'])}", f"flatness = {_toml(d['flatness'])}"]
        for name in ("data", "model", "evaluation", "budget"):
            lines += ["", f"[{name}]"]
            lines += [f"{k} = {_toml(v)}" for k, v in d[name].items() if v is not None]
        for o in d["optimizers"]:
            lines += ["", "[[optimizers]]"]
            lines += [f"{k} = {_toml(v)}" for k, v in o.items() if k != "options"]
            lines.append(f"options = {_toml(o['options'])}")
        return "\n".join(lines) + "\n"

    # ------------------------------------------------------------------ identity

    def key(self) -> str:
        """The sha256 (hex) of the canonical JSON of :meth:`to_dict`: equal configurations
        have equal keys, in every process."""
        return hashlib.sha256(_canonical({"study": CONFIG_VERSION, **self.to_dict()})).hexdigest()

    def incompatibilities(self, other: StudyConfig) -> tuple[str, ...]:
        """What differs between two configurations that a store may not mix, one line per
        field (``"data.n_samples: 4000 != 1000"``); empty when compatible. Symmetric.

        Fields that may differ: optimizers present in only one, seeds, ``paths``,
        ``flatness``, ``evaluation.batch_size``, ``budget.max_pairs``, ``budget.tolerance``.
        """
        if not isinstance(other, StudyConfig):
            raise ConfigError(f"compare with a StudyConfig, got {_type(other)}")
        mine, theirs = self.to_dict(), other.to_dict()
        out = []
        for section, skip in (("data", ()), ("model", ()), ("evaluation", ("batch_size",))):
            out += _differences(section, mine[section], theirs[section], skip)
        out += _differences("budget", mine["budget"], theirs["budget"], ("max_pairs", "tolerance"))
        others = {o["name"]: o for o in theirs["optimizers"]}
        for o in mine["optimizers"]:
            if o["name"] in others:
                out += _differences(f"optimizers[{o['name']!r}]", o, others[o["name"]], ("seeds",))
        return tuple(out)

    def compatible_with(self, other: StudyConfig) -> bool:
        """Whether a store made with ``other`` may be continued with this configuration (no
        :meth:`incompatibilities`)."""
        return not self.incompatibilities(other)


def _check_model_family(
    model: ModelConfig, data: DataConfig, paths: Sequence[str], flatness: Sequence[str]
) -> None:
    """Refuse the path kinds and flatness measures a model does not take, and a committee on
    data that are not two-class."""
    kind = model.kind
    if not model.binary:
        for i, path in enumerate(paths):
            if path == "hamming":
                raise ConfigError(
                    f"paths[{i}]: {path!r} flips +-1 weights one at a time and needs a binary "
                    f"model (model.kind {' or '.join(BINARY_MODEL_KINDS)}); model.kind "
                    f"{kind!r} takes the path kinds "
                    f"{', '.join(k for k in PATH_KINDS if k != 'hamming')}"
                )
        return
    for i, path in enumerate(paths):
        if path not in BINARY_PATH_KINDS:
            raise ConfigError(
                f"paths[{i}]: {path!r} is not measured between binary networks (model.kind "
                f"{kind!r}): its points leave the +-1 weights, so they are not binary networks. "
                f"Binary models take the path kinds {', '.join(BINARY_PATH_KINDS)} (Hamming "
                "paths flip one weight at a time; bent joins two of them at a binary midpoint)"
            )
    for i, measure in enumerate(flatness):
        if measure not in BINARY_FLATNESS_MEASURES:
            raise ConfigError(
                f"flatness[{i}]: {measure!r} is not defined for binary networks (model.kind "
                f"{kind!r}): their loss is piecewise constant in the weights, so its Hessian "
                f"is zero almost everywhere. Binary models take the flatness measure "
                f"{', '.join(BINARY_FLATNESS_MEASURES)} (the error increase when a fraction "
                "of the weights is flipped)"
            )
    if kind == "committee" and data.name not in TWO_CLASS_DATA:
        raise ConfigError(
            f"model.kind 'committee' classifies into two classes, but data.name "
            f"{data.name!r} has more; use a two-class data set ({', '.join(TWO_CLASS_DATA)}) "
            "or model.kind 'binary_mlp'"
        )


# ----------------------------------------------------------------------------- unit keys


def unit_key(kind: str, **inputs: Any) -> str:
    """The content-hash key of a work unit: ``"<kind>:<sha256 hex>"`` of the canonical JSON
    (sorted keys, no spaces) of ``kind`` and ``inputs``.

    Inputs must be everything the unit's result depends on, as plain values: str, int, float
    (finite), bool, None, and lists, tuples (as lists) and dicts with string keys of them.
    ``1`` and ``1.0`` are different inputs (JSON keeps the difference).

    Raises
    ------
    ConfigError
        For a kind that is not a lowercase identifier, or an input that is not plain data
        (the message names where).

    Example
    -------
    >>> unit_key("pair", a="sgd0", b="sgd1") == unit_key("pair", b="sgd1", a="sgd0")
    True
    >>> unit_key("pair", a="sgd0", b="sgd1") == unit_key("pair", a="sgd1", b="sgd0")
    False
    """
    if not isinstance(kind, str) or not _UNIT_KIND.match(kind):
        raise ConfigError(f"unit kind must be a lowercase identifier like 'train', got {kind!r}")
    plain = {name: _plain(f"{kind} input {name!r}", value) for name, value in inputs.items()}
    return f"{kind}:{hashlib.sha256(_canonical({'kind': kind, 'inputs': plain})).hexdigest()}"


# ----------------------------------------------------------------------------- internals


def _canonical(data: Any) -> bytes:
    return json.dumps(
        data, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False
    ).encode("ascii")


def _plain(where: str, value: Any) -> Any:
    if value is None or isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {value} is not finite; keys need finite numbers")
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(f"{where}[{i}]", v) for i, v in enumerate(value)]
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise ConfigError(f"{where}: dict keys must be strings, got {k!r}")
            out[k] = _plain(f"{where}[{k!r}]", v)
        return out
    raise ConfigError(
        f"{where}: a {_type(value)} is not plain data; give str, int, float, bool, None, or "
        "lists and dicts of them (e.g. a config's to_dict(), a tensor's name rather than it)"
    )


def _option_value(where: str, value: Any) -> Any:
    if isinstance(value, (str, bool, int)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"{where}: {value} is not finite")
        return value
    if isinstance(value, (list, tuple)):
        return tuple(_option_value(f"{where}[{i}]", v) for i, v in enumerate(value))
    raise ConfigError(
        f"{where}: a {_type(value)} is not a plain option value; give str, int, float, bool "
        "or a list of them (options that take objects are not configurable in a study)"
    )


def _thaw(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_thaw(v) for v in value]
    if isinstance(value, dict):
        return {k: _thaw(v) for k, v in value.items()}
    return value


def _differences(where: str, a: dict[str, Any], b: dict[str, Any], skip: Sequence[str]) -> list:
    return [
        f"{where}.{k}: {a.get(k)!r} != {b.get(k)!r}"
        for k in sorted(set(a) | set(b))
        if k not in skip and a.get(k) != b.get(k)
    ]


def _set(obj: Any, name: str, value: Any) -> None:
    object.__setattr__(obj, name, value)


def _type(value: Any) -> str:
    return type(value).__name__


def _table(where: str, value: Any, allowed: Sequence[str]) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"{where} must be a table (dict), got {_type(value)}")
    unknown = sorted(str(k) for k in value if k not in allowed)
    if unknown:
        raise ConfigError(
            f"{where} has no field {', '.join(map(repr, unknown))}; its fields are "
            f"{', '.join(allowed)}"
        )
    return dict(value)


def _sequence(where: str, value: Any, *, allow_empty: bool = False) -> tuple:
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
        raise ConfigError(f"{where} must be a list, got {_type(value)}")
    if not value and not allow_empty:
        raise ConfigError(f"{where} is empty; give at least one value")
    return tuple(value)


def _distinct(where: str, values: Sequence[str]) -> None:
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ConfigError(f"{where} lists {', '.join(map(repr, repeated))} more than once")


def _choice(where: str, value: Any, allowed: Sequence[str]) -> None:
    if not isinstance(value, str) or value not in allowed:
        raise ConfigError(f"{where}: unknown {value!r}; choose one of {', '.join(allowed)}")


def _integer(where: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{where} must be an integer, got {_type(value)} {value!r}")
    if value < minimum:
        raise ConfigError(f"{where} must be at least {minimum}, got {value}")


def _real(where: str, value: Any, *, low: float, high: float, closed: str) -> float:
    """A finite number within ``low`` and ``high``; ``closed`` says which ends are allowed
    (``"[]"``, ``"[)"``, ``"(]"``)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where} must be a number, got {_type(value)} {value!r}")
    value = float(value)
    above = value >= low if closed[0] == "[" else value > low
    below = value <= high if closed[1] == "]" else value < high
    if not (math.isfinite(value) and above and below):
        raise ConfigError(f"{where} must lie in {closed[0]}{low}, {high}{closed[1]}, got {value}")
    return value


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    raise ConfigError(f"cannot write a {_type(value)} as TOML")


def _parse_toml(path: str | os.PathLike[str]) -> dict[str, Any]:
    if sys.version_info < (3, 11):
        raise ConfigError(
            f"reading {os.fspath(path)} needs Python >= 3.11 (tomllib); on Python 3.10 build "
            "the configuration with StudyConfig(...) or StudyConfig.from_dict(...)"
        )
    import tomllib

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError as e:
        raise ConfigError(f"{os.fspath(path)}: no such configuration file") from e
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{os.fspath(path)}: cannot be read: {e}") from e
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{os.fspath(path)}: not valid TOML: {e}") from e
