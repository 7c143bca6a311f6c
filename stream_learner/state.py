"""Learner state as data: how it is written, read, and read from older formats.

Every stateful part of a model key's learner step (metrics, drift monitor,
forgetting tracker, label window, schema, the learner itself) has a
``state_dict()`` of plain values (``None``, bools, numbers, strings, bytes,
lists, tuples, dicts, numpy arrays; torch tensors only in the torch
learner's part) with a ``"version"`` of that part's own layout, and a
``from_state`` that rebuilds it. A river object (a model, a detector) is
one opaque pickled blob inside it (:func:`river_blob`).

:func:`encode` turns a state into the bytes a snapshot or Bytewax recovery
stores, :func:`decode` turns them back. The plain part is pickled and read
by an unpickler that builds nothing but plain values; tensors are collected
into one ``torch.save`` file read with ``torch.load(weights_only=True)``.
River blobs are real pickles: they are unpickled only by the part that owns
them, after the snapshot's signature verified (see :mod:`stream_learner.snapshot`).

This module is also the one place that knows older formats: :func:`decode`
converts a payload of format 1 (a pickled ``KeyedLearner`` object) into the
current state, and :func:`migrate` and :func:`expect_version` refuse what
they cannot read with one line naming the version.

>>> payload = encode({"version": 1, "counts": [1, 2], "blob": river_blob({"a": 1.5})})
>>> state = decode(payload)
>>> state["counts"], from_river_blob(state["blob"])
([1, 2], {'a': 1.5})
>>> expect_version({"version": 3}, "the prequential metrics", 1)
Traceback (most recent call last):
...
stream_learner.errors.SnapshotError: the prequential metrics' state has version 3; this release reads version 1 (a snapshot of a newer release?)
"""

from __future__ import annotations

import io
import pickle
import struct
import sys
from collections import OrderedDict
from typing import Any

from stream_learner.errors import SnapshotError

FORMAT_VERSION = 2
"""The format :func:`encode` writes. Format 1 is the pickled ``KeyedLearner`` object of earlier releases."""

_MAGIC = b"SLSTATE"
_HEADER = struct.Struct(">BQ")  # format version, length of the plain part


def river_blob(obj: Any) -> bytes:
    """A river object (model, detector, ...) as one opaque blob."""
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def from_river_blob(blob: bytes) -> Any:
    """The river object of :func:`river_blob` (only ever read from a verified snapshot or the run's own recovery state)."""
    return pickle.loads(blob)


def expect_version(state: dict[str, Any], part: str, version: int) -> None:
    """Refuse a part's state of a layout this release cannot read, in one line."""
    found = state.get("version")
    if found != version:
        raise SnapshotError(f"{part}' state has version {found}; this release reads version {version} (a snapshot of a newer release?)")


def sorted_values(values: Any) -> list[Any]:
    """The members of a set as a list in an order that does not depend on how the set was built (labels and feature names: numbers, strings, bools).

    >>> sorted_values({"b", 2, "a", True})
    [True, 2, 'a', 'b']
    """
    return sorted(values, key=lambda v: (type(v).__name__, v))


def encode(state: dict[str, Any]) -> bytes:
    """The bytes of a state (see the module's docstring); raises ``TypeError`` on anything that is not plain data."""
    plain = io.BytesIO()
    pickler = _PlainPickler(plain)
    pickler.dump(state)
    body = plain.getvalue()
    tensors = b""
    if pickler.torch_side:
        import torch

        buffer = io.BytesIO()
        torch.save(pickler.torch_side, buffer)
        tensors = buffer.getvalue()
    return _MAGIC + _HEADER.pack(FORMAT_VERSION, len(body)) + body + tensors


def decode(payload: bytes) -> dict[str, Any]:
    """The current state held in ``payload``: of the current format, or converted from an older one.

    ``payload`` must be trusted (a verified snapshot's, or this run's own
    recovery state): an older format is a pickle.
    """
    if not payload.startswith(_MAGIC):
        return _from_pickled_learner(payload)
    start = len(_MAGIC) + _HEADER.size
    try:
        version, length = _HEADER.unpack_from(payload, len(_MAGIC))
    except struct.error:
        raise SnapshotError("learner state is truncated") from None
    if version != FORMAT_VERSION:
        raise SnapshotError(f"learner state format {version} cannot be read; this release reads formats 1 to {FORMAT_VERSION}")
    body, tensors = payload[start : start + length], payload[start + length :]
    torch_side = _load_torch_side(tensors) if tensors else []
    try:
        state = _PlainUnpickler(io.BytesIO(body), torch_side).load()
    except (pickle.UnpicklingError, EOFError, IndexError) as exc:
        raise SnapshotError(f"learner state is corrupt: {exc}") from None
    return migrate(state)


def migrate(state: dict[str, Any]) -> dict[str, Any]:
    """A decoded state in the current layout. Every layout so far is the current one; a later one is refused."""
    return state


# -- the current format -------------------------------------------------------

_NUMPY = {
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
}
"""What a pickled numpy array or scalar names (numpy 2 and 1)."""


def _torch_ref(index: int) -> Any:
    """Stands for the ``index``-th object of the torch side in the plain part (never called: the unpickler resolves it)."""
    raise SnapshotError("a torch reference read outside decode()")


class _PlainPickler(pickle.Pickler):
    """Pickles plain data; tensors (and torch's ordered state dicts) go to :attr:`torch_side` instead."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.torch_side: list[Any] = []

    def reducer_override(self, obj: Any) -> Any:
        # not called for None, bools and exact ints, floats, str, bytes, dicts, sets, lists and tuples
        module = type(obj).__module__
        if module.partition(".")[0] == "numpy" or (getattr(obj, "__module__", None), getattr(obj, "__name__", None)) in _NUMPY:
            return NotImplemented  # an array, a scalar, a dtype, or a function they are rebuilt with
        if module.startswith("torch") or (type(obj) is OrderedDict and "torch" in sys.modules):
            self.torch_side.append(obj)
            return _torch_ref, (len(self.torch_side) - 1,)
        if type(obj) is bytearray or obj is _torch_ref:
            return NotImplemented
        raise TypeError(f"a learner state holds a {module}.{type(obj).__qualname__}, which is not plain data")


class _PlainUnpickler(pickle.Unpickler):
    """Builds plain values, numpy arrays, and the torch side's objects; nothing else."""

    def __init__(self, file: io.BytesIO, torch_side: list[Any]) -> None:
        super().__init__(file)
        self._torch_side = torch_side

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == (__name__, "_torch_ref"):
            return self._torch_side.__getitem__
        if (module, name) in _NUMPY:
            return super().find_class(module, name)
        raise SnapshotError(f"learner state names {module}.{name}, which is not plain data")


def _load_torch_side(tensors: bytes) -> list[Any]:
    import torch

    try:
        return torch.load(io.BytesIO(tensors), weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises several kinds for a bad file
        raise SnapshotError(f"learner state's tensors cannot be read: {type(exc).__name__}: {exc}") from None


# -- format 1: a pickled KeyedLearner ------------------------------------------


def _from_pickled_learner(payload: bytes) -> dict[str, Any]:
    raise SnapshotError("learner state format 1 (a pickled learner) cannot be read yet")
