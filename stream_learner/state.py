"""Learner state as data: how it is written, read, and read from older formats.

Every stateful part of a model key's learner step (metrics, drift monitor,
forgetting tracker, label window, schema, the learner itself) has a
``state_dict()`` of plain values (``None``, bools, numbers, strings, bytes,
lists, tuples, dicts, numpy arrays and scalars of numbers, bools, strings
or times; torch tensors only in the torch learner's part) with a ``"version"`` of that part's own layout, and a
``from_state`` that rebuilds it. A river object (a model, a detector) is
one opaque pickled blob inside it (:func:`river_blob`).

:func:`encode` turns a state into the bytes a snapshot or Bytewax recovery
stores, :func:`decode` turns them back. The plain part is pickled and read
by an unpickler that builds nothing but plain values (a numpy array is
written as its dtype's string, shape and bytes, and rebuilt with
``numpy.frombuffer``: no numpy internals); tensors are collected
into one ``torch.save`` file read with ``torch.load(weights_only=True)``.
River blobs are real pickles: they are unpickled only by the part that owns
them, after the snapshot's signature verified (see :mod:`stream_learner.snapshot`).

This module is also the one place that knows older formats: :func:`decode`
converts a payload of format 1 (a pickled ``KeyedLearner`` object, in any
of the layouts the last release of that format read) into the current
state, and refuses a format it cannot read; it reads the numpy arrays of
states written by numpy's own pickles (:func:`legacy_numpy_global`);
:func:`expect_version` refuses a part's layout it cannot read; older
layouts of a part are upgraded here, once per restore, by the function its
``from_state`` (or its container's upgrade) calls, so that every part reads
its current layout alone: the learner step (:func:`learner_step_state`), a
key's slot of challengers (:func:`slot_state`), the step's drift monitor
(:func:`drift_monitor_state`), forgetting tracker (:func:`forgetting_state`)
and cadence (:func:`cadence_state`), the
torch learner (:func:`torch_learner_state`) and the states of the
strategies it holds (:func:`strategy_state`: :func:`avalanche_strategy_state`,
:func:`avalanche_plugin_state`, :func:`rewinding_state`, :func:`agem_state`).
Each refusal is one line naming the version.

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

import functools
import importlib
import io
import pickle
import random
import struct
import sys
from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

import numpy as np

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


def learner_step_state(state: dict[str, Any]) -> dict[str, Any]:
    """A learner step's state (``KeyedLearner``) in the current layout (its ``"version"`` 1, refused otherwise).

    A state from before operators' commands (no ``"operator"``) had none
    applied and was learning: it gets the operator state of that (not
    paused, no command applied). One from before concept reuse (no
    ``"concept_reuse"``) kept no concept library.

    >>> upgraded = learner_step_state({"version": 1, "key": "k"})
    >>> upgraded["operator"], upgraded["concept_reuse"]
    ({'version': 1, 'paused': False, 'applied': []}, None)
    """
    expect_version(state, "the learner step", 1)
    if "operator" in state and "concept_reuse" in state:
        return state
    return {"concept_reuse": None, "operator": {"version": 1, "paused": False, "applied": []}, **state}


def slot_state(state: dict[str, Any]) -> dict[str, Any]:
    """A challengers' slot's state (``Slot``) in the current layout (its ``"version"`` 1, refused otherwise); its candidates' steps are upgraded by :func:`learner_step_state`.

    A state from before delayed labels were evidence (no ``"waiting"``) kept
    no predictions awaiting their labels. One from before the slot obeyed
    operators' commands (no ``"operator"``) had applied none: it gets an
    operator's state of no command applied (not paused: whether each
    candidate learns is in its own step's state).

    >>> upgraded = slot_state({"version": 1, "key": "k"})
    >>> upgraded["waiting"], upgraded["operator"]
    ([], {'version': 1, 'paused': False, 'applied': []})
    """
    expect_version(state, "the challengers' slot", 1)
    if "waiting" in state and "operator" in state:
        return state
    return {"waiting": [], "operator": {"version": 1, "paused": False, "applied": []}, **state}


def drift_monitor_state(state: dict[str, Any]) -> dict[str, Any]:
    """A drift monitor's state in the current layout (its ``"version"`` 2; version 1 upgraded, others refused).

    Version 2 restarts the running sum of ADWIN's window at a detection.
    Version 1 restarted it at the update after one, so a version-1 state
    whose detector has just detected may hold the errors from before the
    detection: that next update dropped them, and the upgrade drops them now
    (the detector's blob is read once more for its flag, only for version 1).
    """
    if state.get("version") == 1:
        just_detected = from_river_blob(state["detector"]).drift_detected
        return {**state, "version": 2, **({"sum": 0.0, "count": 0} if just_detected else {})}
    expect_version(state, "the drift monitor", 2)
    return state


def forgetting_state(state: dict[str, Any]) -> dict[str, Any]:
    """A forgetting tracker's state in the current layout (its ``"version"`` 2; version 1 upgraded, others refused).

    Version 2 names the sampling RNG's ``seed`` and holds no RNG state
    (``"rng"`` None) while nothing was drawn from it. Version 1 always held
    the RNG's state, which is all its tracker goes on with: its seed is
    never read, and is upgraded as ``None``.

    >>> forgetting_state({"version": 1, "rng": [3, [1, 2], None]})
    {'version': 2, 'rng': [3, [1, 2], None], 'seed': None}
    """
    if state.get("version") == 1:
        return {**state, "version": 2, "seed": None}
    expect_version(state, "the forgetting tracker", 2)
    return state


def cadence_state(state: dict[str, Any]) -> dict[str, Any]:
    """A reporting cadence's state in the current layout (its ``"version"`` 1, refused otherwise).

    A state from before the end-of-stream mark (no ``"finished"``) is not
    known to have finished.

    >>> cadence_state({"version": 1, "since_metrics": 0, "since_snapshot": 0, "snapshot_at": 0.0})["finished"]
    False
    """
    expect_version(state, "the cadence", 1)
    return state if "finished" in state else {**state, "finished": False}


def torch_learner_state(state: dict[str, Any], strategies: Sequence[type]) -> dict[str, Any]:
    """A torch learner's state in the current layout (its ``"version"`` 1, refused otherwise); ``strategies`` are its strategies' classes, in order.

    A state from before the next-class row (no ``next_class_row``) has an
    output layer exactly as wide as the classes seen: it keeps growing that
    way, so a restored learner behaves as the one that was saved. Its
    strategies' states are upgraded by :func:`strategy_state` (a state
    holding another number of strategies is left for the learner to refuse).

    >>> torch_learner_state({"version": 1, "n_outputs": 2, "strategies": []}, strategies=[])["next_class_row"]
    False
    """
    expect_version(state, "the torch learner", 1)
    upgraded = {**state, "next_class_row": state.get("next_class_row", False)}
    if len(strategies) == len(state["strategies"]):
        upgraded["strategies"] = [strategy_state(cls, s, state["rng"]) for cls, s in zip(strategies, state["strategies"])]
    return upgraded


AVALANCHE_STRATEGY = "strategies._avalanche.AvalancheStrategy"
"""The base of the strategies made of Avalanche plugins (named, not imported: the core imports no strategy)."""
AVALANCHE_PLUGIN = "strategies.avalanche.AvalanchePlugin"
"""The strategy that runs any Avalanche plugin by its dotted path."""
REWINDING = "strategies._changepoint.Rewinding"
"""The mixin that keeps a trail of the latest micro-batches' errors (EWC, A-GEM)."""
AGEM = "strategies.agem.AGEM"
"""The built-in A-GEM strategy's class."""


def strategy_state(cls: type, state: dict[str, Any], rng_state: Any) -> dict[str, Any]:
    """A torch strategy's state in the current layout of its class ``cls`` (each class it derives from upgrades its own part); ``rng_state`` is its learner's RNG state.

    A state in the current layout is returned as it is (the same object).
    """
    names = {f"{c.__module__}.{c.__qualname__}" for c in cls.__mro__}
    if AVALANCHE_STRATEGY in names:
        state = avalanche_strategy_state(state)
    if AVALANCHE_PLUGIN in names:
        state = avalanche_plugin_state(state)
    if REWINDING in names:
        state = rewinding_state(state)
    if AGEM in names:
        state = agem_state(state, _initial_seed(rng_state))
    return state


def avalanche_strategy_state(state: dict[str, Any]) -> dict[str, Any]:
    """An Avalanche strategy's base state (its boundary count and the learner's micro-batch size, ``"batch"``) in the current layout.

    A state without ``"batch"`` (written before the strategies kept it;
    GEM's, LwF's and Replay's until they wrote the base's state too) gets 1,
    the size a template starts with and the one those releases resumed with;
    the next micro-batch raises it to the learner's (GEM's, LwF's and
    Replay's boundary hooks give the same result at any size). A state
    without ``"experiences"`` (an Avalanche plugin's before its model
    existed) holds nothing.

    >>> avalanche_strategy_state({"experiences": 2})
    {'experiences': 2, 'batch': 1}
    """
    if "experiences" not in state or "batch" in state:
        return state
    return {**state, "batch": 1}


def avalanche_plugin_state(state: dict[str, Any]) -> dict[str, Any]:
    """An Avalanche plugin strategy's state in the current layout.

    A state from before its before-training-experience hooks were deferred
    to a concept's first micro-batch (no ``"starting"``) ran them at the
    boundary already: the next micro-batch does not start an experience.

    >>> avalanche_plugin_state({"experiences": 1, "batch": 4, "plugin": {}})["starting"]
    False
    """
    if "experiences" not in state or "starting" in state:
        return state
    return {**state, "starting": False}


def rewinding_state(state: dict[str, Any]) -> dict[str, Any]:
    """A rewinding strategy's state (EWC, A-GEM) in the current layout.

    A state from before the trail of prequential errors (no ``"trail"``)
    resumes with an empty one, as after a boundary: the next boundary finds
    a rise only in the errors since the restore.

    >>> rewinding_state({"experiences": 0, "batch": 1})["trail"]
    []
    """
    return state if "trail" in state else {**state, "trail": []}


def agem_state(state: dict[str, Any], seed: int) -> dict[str, Any]:
    """An A-GEM strategy's state in the current layout; ``seed`` is its learner's.

    A state from before A-GEM's seeded memory RNG (a memory but no ``"rng"``)
    gets the RNG a learner of that seed starts with, as its snapshot resumed
    with, and no reference batches drawn (``"draws"`` 0), where it kept no count.

    >>> state = agem_state({"experiences": 1, "buffers": []}, seed=3)
    >>> fresh = random.Random(3).getstate()
    >>> state["draws"], state["rng"] == [fresh[0], list(fresh[1]), fresh[2]]
    (0, True)
    """
    if "buffers" not in state or "rng" in state:  # a strategy without a model yet keeps no memory
        return state
    version, words, gauss = random.Random(seed).getstate()
    return {"draws": 0, **state, "rng": [version, list(words), gauss]}


def _initial_seed(rng_state: Any) -> int:
    """The seed a torch RNG state was started from (a torch learner's seed)."""
    import torch

    return int(torch.Generator().set_state(rng_state).initial_seed())


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
    return state


# -- the current format -------------------------------------------------------


def _torch_ref(index: int) -> Any:
    """Stands for the ``index``-th object of the torch side in the plain part (never called: the unpickler resolves it)."""
    raise SnapshotError("a torch reference read outside decode()")


def _numpy_array(dtype: str, shape: tuple[int, ...], data: bytes | bytearray) -> np.ndarray:
    """The numpy array of :func:`_numpy_reduction`: its dtype's string, its shape and its bytes (C order), which it uses as its memory (writable if a ``bytearray``).

    >>> _numpy_array("<i8", (2, 2), bytearray(np.arange(4).tobytes())).tolist()
    [[0, 1], [2, 3]]
    """
    kind = _plain_dtype(dtype)
    try:
        if kind.itemsize == 0:  # numpy reads no buffer of zero-size items; such an array holds nothing but its shape
            return np.zeros(shape, kind)
        return np.frombuffer(data, kind).reshape(shape)
    except (ValueError, TypeError) as exc:
        raise SnapshotError(f"learner state is corrupt: a numpy array of {dtype} {tuple(shape)}: {exc}") from None


def _numpy_scalar(dtype: str, data: bytes) -> np.generic:
    """The numpy scalar of :func:`_numpy_reduction` (the one item of an array of its bytes)."""
    item: np.generic = _numpy_array(dtype, (1,), data)[0]  # read-only over bytes: the item is a copy
    return item


@functools.lru_cache(maxsize=64)
def _plain_dtype(name: str) -> np.dtype[Any]:
    """The dtype a state names by its string (``dtype.str``); refused if it holds objects or is not written that way."""
    try:
        kind = np.dtype(name)
    except (TypeError, ValueError):
        kind = None
    if kind is None or kind.hasobject or kind.str != name:
        raise SnapshotError(f"learner state names the numpy dtype {name!r}, which is not plain data")
    return kind


@functools.lru_cache(maxsize=64)
def _dtype_name(dtype: np.dtype[Any]) -> str | None:
    """The string that names ``dtype`` whole (``dtype.str``: numbers, bools, strings, bytes, dates and times, raw bytes); ``None`` for objects or fields."""
    return None if dtype.hasobject or np.dtype(dtype.str) != dtype else dtype.str


def _numpy_reduction(value: np.ndarray | np.generic) -> tuple[Any, tuple[Any, ...]]:
    """How :class:`_PlainPickler` writes a numpy array or scalar through numpy's public API: its dtype's string, shape and bytes.

    An array's bytes go in as a pickle buffer, read back as a ``bytearray``
    that the rebuilt array uses as its own writable memory.
    """
    name = _dtype_name(value.dtype)
    if name is None:
        raise TypeError(f"a learner state holds a numpy {type(value).__name__} of dtype {value.dtype}, which is not plain data")
    if isinstance(value, np.generic):
        return _numpy_scalar, (name, value.tobytes())
    return _numpy_array, (name, value.shape, pickle.PickleBuffer(np.ascontiguousarray(value).reshape(-1).view(np.uint8).data))


_OWN_GLOBALS = {"_torch_ref", "_numpy_array", "_numpy_scalar"}
"""This module's functions a state's plain part names (the unpickler resolves ``_torch_ref`` to the torch side)."""


class _PlainPickler(pickle.Pickler):
    """Pickles plain data; numpy arrays and scalars by their bytes; tensors (and torch's ordered state dicts) go to :attr:`torch_side`."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.torch_side: list[Any] = []

    def reducer_override(self, obj: Any) -> Any:
        # not called for None, bools and exact ints, floats, str, bytes, dicts, sets, lists and tuples
        kind = type(obj)
        if kind is np.ndarray or isinstance(obj, np.generic):
            return _numpy_reduction(obj)
        module = kind.__module__
        # an OrderedDict is what a torch module's state_dict() is (torch.load keeps its _metadata); only torch makes one here
        if module.startswith("torch") or (kind is OrderedDict and "torch" in sys.modules):
            self.torch_side.append(obj)
            return _torch_ref, (len(self.torch_side) - 1,)
        if kind is bytearray or obj is _torch_ref or obj is _numpy_array or obj is _numpy_scalar:
            return NotImplemented
        raise TypeError(f"a learner state holds a {module}.{kind.__qualname__}, which is not plain data")


class _PlainUnpickler(pickle.Unpickler):
    """Builds plain values, numpy arrays and scalars, and the torch side's objects; nothing else."""

    def __init__(self, file: io.BytesIO, torch_side: list[Any]) -> None:
        super().__init__(file)
        self._torch_side = torch_side

    def find_class(self, module: str, name: str) -> Any:
        if module == __name__ and name in _OWN_GLOBALS:
            return self._torch_side.__getitem__ if name == "_torch_ref" else globals()[name]
        legacy = legacy_numpy_global(module, name)
        if legacy is not None:
            return legacy
        raise SnapshotError(f"learner state names {module}.{name}, which is not plain data")


LEGACY_NUMPY_GLOBALS = {
    ("numpy", "dtype"),
    ("numpy", "ndarray"),
    ("numpy._core.numeric", "_frombuffer"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "scalar"),
}
"""What numpy's own pickle of an array or scalar names (numpy 2; numpy 1 named ``numpy.core`` for ``numpy._core``).

States written before arrays and scalars were written by their bytes hold
these; they are private to numpy, read against numpy 2 (the range
``pyproject.toml`` pins).
"""


def legacy_numpy_global(module: str, name: str) -> Any:
    """The numpy function or class an earlier state's numpy pickle names (``None`` if it is not one of :data:`LEGACY_NUMPY_GLOBALS`).

    The one place that reaches into numpy's private modules, only to read
    states written before; new states name none of them.

    >>> legacy_numpy_global("numpy.core.multiarray", "_reconstruct") is legacy_numpy_global("numpy._core.multiarray", "_reconstruct") is not None
    True
    >>> legacy_numpy_global("numpy", "load") is None
    True
    """
    if module.startswith("numpy.core."):  # numpy 1's name of the same module
        module = "numpy._core." + module.removeprefix("numpy.core.")
    if (module, name) not in LEGACY_NUMPY_GLOBALS:
        return None
    return getattr(importlib.import_module(module), name)


def _load_torch_side(tensors: bytes) -> Any:
    import torch

    try:
        return torch.load(io.BytesIO(tensors), weights_only=True, map_location="cpu")
    except Exception as exc:  # torch raises several kinds for a bad file
        raise SnapshotError(f"learner state's tensors cannot be read: {type(exc).__name__}: {exc}") from None


# -- format 1: a pickled KeyedLearner ------------------------------------------


class _Old:
    """An object of an earlier release, as its pickle describes it: its class's name and its attributes."""

    qualname = ""

    def __init__(self, *args: Any) -> None:
        self.fields: dict[str, Any] = {}

    def __setstate__(self, state: Any) -> None:
        if isinstance(state, tuple):  # (__dict__, __slots__ values)
            state = {**(state[0] or {}), **(state[1] or {})}
        self.fields = dict(state)


_OLD_CLASSES: dict[str, type[_Old]] = {}


class _Format1Unpickler(pickle.Unpickler):
    """Our own classes become :class:`_Old` records; everything else (river, numpy, the standard library) is what it was."""

    def find_class(self, module: str, name: str) -> Any:
        if module.partition(".")[0] in ("stream_learner", "strategies"):
            qualname = f"{module}.{name}"
            if qualname not in _OLD_CLASSES:
                _OLD_CLASSES[qualname] = type(name, (_Old,), {"qualname": qualname})
            return _OLD_CLASSES[qualname]
        if (module, name) == ("builtins", "getattr"):
            return _old_getattr
        return super().find_class(module, name)


def _old_getattr(obj: Any, name: str) -> Any:
    """``getattr`` as a pickle calls it (a bound method kept as an attribute); an old record has no methods: ``None``."""
    return None if isinstance(obj, _Old) else getattr(obj, name)


def _from_pickled_learner(payload: bytes) -> dict[str, Any]:
    """The current state of a format-1 payload (a pickled ``KeyedLearner``)."""
    try:
        old = _Format1Unpickler(io.BytesIO(payload)).load()
    except Exception as exc:  # anything a pickle of another release may raise
        raise SnapshotError(f"learner state of format 1 cannot be read: {type(exc).__name__}: {exc}") from None
    if not isinstance(old, _Old) or old.qualname != "stream_learner.engine.KeyedLearner":
        raise SnapshotError(f"snapshot holds a {getattr(old, 'qualname', type(old).__name__)}, not a learner")
    f = old.fields
    config = f["config"].fields
    spec = config["learner"].fields
    metrics = _prequential(f["metrics"].fields)
    forgetting = _forgetting(f["forgetting"].fields, metrics["task"])
    monitor = f["monitor"]
    pending = f.get("pending")
    new_labels = f.get("new_labels")
    schema = f.get("schema")
    return {
        "version": 1,
        "key": f["key"],
        "spec": {name: spec[name] for name in ("model", "params", "seed", "strategy", "strategy_params")},
        "learner": _learner(f["learner"]),
        "events": f["events"],
        "learned": f["learned"],
        "failures": f.get("failures", 0),
        "metrics": metrics,
        "monitor": None if monitor is None else _monitor(monitor.fields, config["detector_params"], spec["seed"]),
        "forgetting": forgetting,
        "schema": _schema(schema.fields) if schema is not None else _schema_of_samples(forgetting, metrics["task"]),
        "pending": None if pending is None else _pending(pending.fields),
        "concepts": {
            "version": 1,
            "concept": f["concept"],
            "concepts": f["concepts"],
            "drifts": f["drifts"],
            "tasks": [[task, concept] for task, concept in f["tasks"].items()],
            "new_labels": None if new_labels is None else {"version": 1, "seen": sorted_values(new_labels.fields["seen"]), "since": new_labels.fields["since"]},
        },
        "resume": {"version": 1, "next_offsets": [[p, o] for p, o in f["next_offsets"].items()]},
        "cadence": {"version": 1, "since_metrics": f["_since_metrics"], "since_snapshot": f["_since_snapshot"], "snapshot_at": f["_snapshot_at"]},
        "feature_monitor": None,  # format 1 had no input-drift monitor
    }


def _learner(old: _Old) -> dict[str, Any]:
    f = old.fields
    if old.qualname == "stream_learner.learners.river.RiverLearner":
        return {"version": 1, "family": "river", "model": river_blob(f["model"])}
    if old.qualname == "stream_learner.learners.strategy.RiverStrategyLearner":
        return {"version": 1, "family": "river", "model": river_blob(f["inner"].fields["model"]), "strategies": [{} for _ in f["strategies"]]}
    if old.qualname == "stream_learner.learners.torch.TorchLearner":
        return {"version": 1, "family": "torch", **_load_torch_side(f["state"])}
    raise SnapshotError(f"learner state of format 1 holds a {old.qualname}, which this release cannot read")


def _prequential(f: dict[str, Any]) -> dict[str, Any]:
    """Older layouts kept the counts without the underscore and counted each error as it came (no ``pending``)."""
    classification = f["_classification"]
    counts = {name: f[f"_{name}"] if f"_{name}" in f else f[name] for name in ("labelled", "correct", "abs_error", "sq_error")}
    pending = f.get("pending", b"" if classification else [])
    return {
        "version": 1, "task": f["task"], "window": f["window"], **counts, "ring": bytes(f["_ring"]), "at": f["_at"],
        "pending": bytes(pending) if classification else list(pending),
    }  # fmt: skip


def _monitor(f: dict[str, Any], detector_params: dict[str, Any], seed: int | None) -> dict[str, Any]:
    """A monitor from before it kept its parameters gets them as the run's configuration gave them (the constructor's defaults)."""
    name = f["name"]
    only_increases = f["_check_rise"] if name == "adwin" else True
    params = f.get("params")
    if params is None:
        params = dict(detector_params)
        if name == "kswin":
            params.setdefault("seed", seed)
        if name == "page_hinkley":
            params.setdefault("mode", "up")
    return {"version": 1, "name": name, "params": params, "only_increases": only_increases, "detector": river_blob(f["detector"]), "sum": f["_sum"], "count": f["_count"]}


def _forgetting(f: dict[str, Any], task: str) -> dict[str, Any]:
    rng_version, rng_words, gauss = f["_rng"].getstate()
    return {
        "version": 1,
        "task": task,
        "sample_size": f["sample_size"],
        "max_concepts": f["max_concepts"],
        "max_rows": f["rows"].maxlen,
        "holdout": f["holdout"],
        "rng": [rng_version, list(rng_words), gauss],
        "samples": [[c, {**s.fields, "items": [[x, y] for x, y in s.fields["items"]]}] for c, s in f["_samples"].items()],
        "best": [[c, v] for c, v in f["_best"].items()],
        "at_end": [[c, v] for c, v in f["_at_end"].items()],
        "rows": [[[c, v] for c, v in row.items()] for row in f["rows"]],
        "evaluations": f["evaluations"],
        "current": f["current"],
        "forgetting": list(f["_forgetting"]),
    }


def _pending(f: dict[str, Any]) -> dict[str, Any]:
    """An older window had no ``labelled`` ids, and counted no ``received`` labels: every one was matched, expired, unmatched or waiting."""
    early = f["early"]
    received = f.get("received", f["matched"] + f["expired"] + f["unmatched"] + len(early))
    return {
        "version": 1,
        "max_size": f["max_size"],
        "max_age": f["max_age"],
        "pending": [[event_id, x, y_pred, at] for event_id, (x, y_pred, at) in f["pending"].items()],
        "early": [[event_id, label, at] for event_id, (label, at) in early.items()],
        "gone": list(f["gone"]),
        "labelled": list(f.get("labelled", ())),
        "received": received,
        "matched": f["matched"],
        "expired": f["expired"],
        "unmatched": f["unmatched"],
    }


def _schema(f: dict[str, Any]) -> dict[str, Any]:
    classes = [[label, kind.__name__] for label, kind in f["classes"].items()]
    return {"version": 1, "classifier": f["classifier"], "classes": classes, "numeric": sorted_values(f["numeric"]), "categorical": sorted_values(f["categorical"])}


def _schema_of_samples(forgetting: dict[str, Any], task: str) -> dict[str, Any]:
    """A learner from before schemas: its forgetting samples are what is known of its schema (the first type a label or feature came with)."""
    classifier = task == "classification"
    classes: dict[Any, str] = {}
    numeric: set[Any] = set()
    categorical: set[Any] = set()
    for _, sample in forgetting["samples"]:
        for x, y in sample["items"]:
            if classifier:
                classes.setdefault(y, type(y).__name__)
            for name, value in x.items():
                if name not in numeric and name not in categorical:
                    (categorical if type(value) is str else numeric).add(name)
    return {"version": 1, "classifier": classifier, "classes": list(map(list, classes.items())), "numeric": sorted_values(numeric), "categorical": sorted_values(categorical)}
