"""Keeping results as plain files: ``<path>.json`` for the data, ``<path>.safetensors`` for tensors.

Every result class derives from :class:`Stored`, whose ``save(path)`` writes, and whose
``load(path)`` reads back:

- ``<path>.json``: ``{"type": "funcspace.Slice1D", "format_version": 1, "data": ...,
  "tensors": ...}`` where ``data`` is the result's ``to_dict()`` (lists, numbers, strings,
  None; non-finite floats as ``NaN``/``Infinity``, as Python's :mod:`json` writes them) and
  ``tensors`` is None or ``{"names": [...], "sha256": ..., "bytes": ...}``: the tensors'
  names in their order and the checksum and size of the tensor file;
- ``<path>.safetensors``, only for a result with tensors (directions, eigenvectors, model
  states): :mod:`safetensors` with the type and format version in its metadata.

Both files are written to a temporary file and moved in place (the tensors first), so an
interrupted save leaves the previous pair or a pair whose checksum fails, never a half-written
file read as whole. Nothing is pickled. ``path`` may end in ``.json`` or ``.safetensors``: the
suffix is dropped. Tensors are stored from the CPU and load on the CPU.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol, TypeVar

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from torch import Tensor, nn

from funcspace.errors import DataError, FuncspaceError

if sys.version_info >= (3, 11):
    from typing import Self
else:  # torch depends on typing_extensions
    from typing_extensions import Self

#: The file format written; files of a newer format are refused.
FORMAT_VERSION = 1
_SUFFIXES = (".json", ".safetensors")
_CHUNK = 2**20
T = TypeVar("T")
PathLike = str | os.PathLike[str]


class Storable(Protocol):
    def to_dict(self) -> dict[str, Any]: ...


def type_name(cls: type) -> str:
    """The name a file records for a result class: ``"funcspace.<ClassName>"``."""
    return f"funcspace.{cls.__name__}"


def file_pair(path: PathLike) -> tuple[Path, Path]:
    """``(<path>.json, <path>.safetensors)``; a ``.json`` or ``.safetensors`` suffix is dropped."""
    base = Path(path)
    if base.suffix in _SUFFIXES:
        base = base.with_suffix("")
    return base.with_name(base.name + ".json"), base.with_name(base.name + ".safetensors")


def save_result(
    result: Storable, path: PathLike, tensors: Mapping[str, Tensor] | None = None
) -> Path:
    """Write ``result.to_dict()`` and ``tensors`` as ``<path>.json`` and ``<path>.safetensors``.

    The work of :meth:`Stored.save`, which documents ``path``, the return value and the errors:
    ``result``'s class name is recorded as the files' type; ``tensors`` go to the safetensors
    file in their order (copied to the CPU, contiguous), which is written only when there are
    some.
    """
    json_file, tensor_file = file_pair(path)
    json_file.parent.mkdir(parents=True, exist_ok=True)
    kind = type_name(type(result))
    envelope: dict[str, Any] = {
        "type": kind,
        "format_version": FORMAT_VERSION,
        "data": result.to_dict(),
        "tensors": None,
    }
    _to_json(envelope, kind)  # refuse bad data before any file is replaced
    if tensors:
        stored = {name: _dense(name, t) for name, t in tensors.items()}
        meta = {"type": kind, "format_version": str(FORMAT_VERSION)}
        tmp = _temporary(tensor_file)
        try:
            save_file(stored, str(tmp), metadata=meta)
            digest, size = _digest(tmp)
            os.replace(tmp, tensor_file)
        finally:
            tmp.unlink(missing_ok=True)
        envelope["tensors"] = {"names": list(stored), "sha256": digest, "bytes": size}
    write_atomic(json_file, (_to_json(envelope, kind) + "\n").encode("utf-8"))
    return json_file


def load_result(
    cls: type, path: PathLike, build: Callable[[dict[str, Any], dict[str, Tensor]], T]
) -> T:
    """Read the files :func:`save_result` wrote for a ``cls`` and build the result.

    Parameters
    ----------
    cls : type
        The result class expected; a file of another type is refused.
    path : str or PathLike
        As given to :func:`save_result`.
    build : callable (data, tensors) -> result
        Makes the result from the stored ``to_dict()`` output and the tensors (by name, in
        their stored order; empty without a tensor file). Its KeyError, TypeError, ValueError
        or IndexError (other than a FuncspaceError) are reported as a malformed file.

    Returns
    -------
    The result ``build`` made.

    Raises
    ------
    DataError
        For a missing, truncated, corrupted or malformed file, or a tensor file that is not the
        one saved with the JSON file (checksum); the message names the file.
    FuncspaceError
        For a file that holds another type of result or was written by a newer funcspace.
    """
    json_file, tensor_file = file_pair(path)
    kind = type_name(cls)
    envelope = _read_json(json_file)
    _check_header(json_file, envelope.get("type"), envelope.get("format_version"), kind)
    with _malformed(json_file, kind):
        listed = envelope["tensors"]
        data = envelope["data"]
        if not isinstance(data, dict):
            raise TypeError("'data' is not an object")
    tensors = {} if listed is None else _read_tensors(tensor_file, listed, kind, json_file)
    with _malformed(json_file, kind):
        return build(data, tensors)


class Stored:
    """The ``save`` and ``load`` of a result (a dataclass with ``to_dict``/``from_dict``).

    A result says what it stores through two hooks: ``_tensors()``, the tensors for the
    safetensors file by name (none by default: a JSON-only result), and the classmethod
    ``_restore(data, tensors, **keywords)``, the result from ``to_dict()``'s output and those
    tensors (by default ``from_dict(data, **keywords)``). A result whose ``load`` takes keywords
    (a model template, metrics) overrides ``load`` with them, explicitly, and calls
    ``_load(path, **keywords)``, which hands them to ``_restore``.

    ``save`` and ``load`` are put in each subclass's own namespace (unless it defines them), so
    that its reference documentation lists them.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in ("save", "load"):
            if name not in vars(cls):
                setattr(cls, name, vars(Stored)[name])

    def save(self, path: PathLike) -> Path:
        """Write the result as ``<path>.json`` and, when it holds tensors, ``<path>.safetensors``.

        The JSON file holds :meth:`to_dict`'s output; the tensors it leaves out (the class
        documentation says which) go to the safetensors file, with a checksum in the JSON file.
        Both are written whole and then moved in place, so an interrupted save never leaves a
        half-written file.

        Parameters
        ----------
        path : str or PathLike
            The files' common name (a ``.json`` or ``.safetensors`` suffix is dropped); missing
            parent folders are made.

        Returns
        -------
        Path
            The JSON file.

        Raises
        ------
        FuncspaceError
            For data that JSON cannot hold or a tensor that is not a dense ``torch.Tensor``.
        """
        return save_result(self, path, self._tensors())  # type: ignore[arg-type]

    @classmethod
    def load(cls, path: PathLike) -> Self:
        """The result :meth:`save` wrote at ``path``, its tensors included (on the CPU).

        Parameters
        ----------
        path : str or PathLike
            As given to :meth:`save` (a ``.json`` or ``.safetensors`` suffix is dropped).

        Returns
        -------
        result
            An instance of the class ``load`` is called on, equal in content to the one saved.

        Raises
        ------
        DataError
            For a missing, truncated, corrupted or malformed file, or a tensor file that is not
            the one saved with the JSON file; the message names the file.
        FuncspaceError
            For a file that holds another type of result or was written by a newer funcspace.
        """
        return cls._load(path)

    @classmethod
    def _load(cls, path: PathLike, **keywords: Any) -> Self:
        return load_result(cls, path, lambda data, tensors: cls._restore(data, tensors, **keywords))

    def _tensors(self) -> dict[str, Tensor]:
        return {}

    @classmethod
    def _restore(cls, data: dict[str, Any], tensors: dict[str, Tensor], **keywords: Any) -> Self:
        return cls.from_dict(data, **keywords)  # type: ignore[attr-defined]


def pack(prefix: str, params: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """``params`` with names ``"<prefix>/<name>"``, for one tensor file holding several dicts."""
    return {f"{prefix}/{name}": t for name, t in params.items()}


def unpack(prefix: str, tensors: Mapping[str, Tensor]) -> dict[str, Tensor]:
    """The tensors named ``"<prefix>/<name>"``, by ``name``, in their stored order."""
    start = prefix + "/"
    return {k[len(start) :]: t for k, t in tensors.items() if k.startswith(start)}


def summary(params: Mapping[str, Tensor]) -> dict[str, dict[str, Any]]:
    """Each tensor's shape and dtype (``{"shape": [7, 3], "dtype": "float64"}``), by name."""
    return {
        name: {"shape": list(t.shape), "dtype": str(t.dtype).removeprefix("torch.")}
        for name, t in params.items()
    }


def check_summary(given: Mapping[str, Tensor], stored: Any, label: str) -> None:
    """Refuse tensors whose names, shapes or dtypes differ from a :func:`summary`.

    Raises
    ------
    FuncspaceError
        Naming ``label`` and the first tensor that differs.
    """
    if summary(given) == stored:
        return
    if not isinstance(stored, dict) or list(given) != list(stored):
        raise FuncspaceError(f"{label}: the tensor names differ from the stored ones")
    for name, entry in summary(given).items():
        if entry != stored[name]:
            raise FuncspaceError(f"{label}: tensor {name!r} is {entry}, stored as {stored[name]}")


def module_from_state(template: nn.Module, state: Mapping[str, Tensor], where: str) -> nn.Module:
    """A copy of ``template`` holding ``state`` (strict: same names, shapes and dtypes).

    Parameters
    ----------
    template : nn.Module
        A model of the saved architecture; left untouched.
    state : mapping of str -> Tensor
        A state dict (parameters and persistent buffers).
    where : str
        Named in the messages (the file).

    Returns
    -------
    nn.Module
        The copy, on the template's device, in eval mode.

    Raises
    ------
    FuncspaceError
        For a template that is no module, or whose state dict has other tensor names, or a
        tensor of another shape or dtype (the message names it).
    """
    if not isinstance(template, nn.Module):
        raise FuncspaceError(f"model must be a torch.nn.Module, got {type(template).__name__}")
    expected = template.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise FuncspaceError(
            f"{where}: the model is not the saved architecture: tensors missing from the file "
            f"{missing[:5]}, tensors the model lacks {unexpected[:5]}"
        )
    for name, own in expected.items():
        saved = state[name]
        if saved.shape != own.shape or saved.dtype != own.dtype:
            raise FuncspaceError(
                f"{where}: tensor {name!r} is saved as {tuple(saved.shape)} {saved.dtype}, the "
                f"model has {tuple(own.shape)} {own.dtype}"
            )
    model = copy.deepcopy(template)
    model.load_state_dict(dict(state), strict=True)
    return model.eval()


# --------------------------------------------------------------------------- internals


def _dense(name: str, t: Any) -> Tensor:
    if not isinstance(t, Tensor) or t.layout != torch.strided:
        raise FuncspaceError(f"tensor {name!r} is not a dense torch.Tensor ({type(t).__name__})")
    # A copy: safetensors refuses tensors that share memory (tied weights, views).
    return t.detach().to("cpu", copy=True).contiguous()


def _to_json(envelope: dict[str, Any], kind: str) -> str:
    try:
        return json.dumps(envelope)
    except (TypeError, ValueError) as e:
        raise FuncspaceError(f"{kind}.to_dict() holds data that JSON cannot store: {e}") from e


def write_atomic(file: Path, data: bytes) -> None:
    """Write ``data`` to ``file`` all or nothing: a temporary file in the same folder, synced,
    then renamed over ``file`` (a reader never sees half a file)."""
    tmp = _temporary(file)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, file)
    finally:
        tmp.unlink(missing_ok=True)


def _temporary(target: Path) -> Path:
    fd, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    return Path(name)


def _digest(file: Path) -> tuple[str, int]:
    sha, size = hashlib.sha256(), 0
    with open(file, "rb") as f:
        while chunk := f.read(_CHUNK):
            sha.update(chunk)
            size += len(chunk)
    return sha.hexdigest(), size


@contextmanager
def _malformed(file: Path, kind: str) -> Iterator[None]:
    try:
        yield
    except FuncspaceError:
        raise
    except (KeyError, TypeError, ValueError, IndexError) as e:
        raise DataError(f"{file}: malformed {kind} file ({type(e).__name__}: {e})") from e


def _read_json(file: Path) -> dict[str, Any]:
    try:
        text = file.read_bytes().decode("utf-8")
    except FileNotFoundError as e:
        raise DataError(f"{file}: no such file (nothing saved there?)") from e
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"{file}: cannot be read: {e}") from e
    try:
        envelope = json.loads(text)
    except ValueError as e:
        raise DataError(f"{file}: not valid JSON (truncated or corrupted?): {e}") from e
    if not isinstance(envelope, dict):
        raise DataError(f"{file}: not a saved funcspace result (no JSON object)")
    return envelope


def _check_header(file: Path, kind: Any, version: Any, expected: str) -> None:
    if not isinstance(kind, str) or isinstance(version, bool) or not isinstance(version, int):
        raise DataError(f"{file}: not a saved funcspace result (no type and format_version)")
    if kind != expected:
        name = kind.rpartition(".")[2]
        raise FuncspaceError(f"{file} holds a {kind}, not a {expected}; read it with {name}.load")
    if not 1 <= version <= FORMAT_VERSION:
        raise FuncspaceError(
            f"{file} has format version {version}; this funcspace reads versions 1 to "
            f"{FORMAT_VERSION} (a newer funcspace wrote it?)"
        )


def _read_tensors(file: Path, listed: Any, kind: str, json_file: Path) -> dict[str, Tensor]:
    with _malformed(json_file, kind):
        names, sha256, size = listed["names"], listed["sha256"], listed["bytes"]
        names = [str(n) for n in names]
    if not file.exists():
        raise DataError(f"{file}: no such file; {json_file} was saved with it")
    digest, actual = _digest(file)
    if digest != sha256:
        raise DataError(
            f"{file}: {actual} bytes whose checksum is not the one recorded in {json_file} "
            f"({size} bytes): truncated, corrupted or from another save"
        )
    try:
        with safe_open(str(file), framework="pt") as f:
            meta = f.metadata() or {}
            missing = sorted(set(names) - set(f.keys()))
            tensors = {} if missing else {name: f.get_tensor(name) for name in names}
    except Exception as e:  # safetensors raises its own error types for a bad header
        raise DataError(f"{file}: not a valid safetensors file: {e}") from e
    if missing:
        raise DataError(f"{file}: lacks the tensors {missing[:5]} listed in {json_file}")
    version = meta.get("format_version", "")
    _check_header(file, meta.get("type"), int(version) if version.isdigit() else None, kind)
    return tensors
