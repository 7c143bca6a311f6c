"""Comparing part states (``state_dict()`` results) in tests: plain values, numpy arrays and torch tensors."""

from __future__ import annotations

import math
import pickle
from typing import Any

PICKLE = b"\x80\x05"


def _repickled(blob: bytes) -> bytes:
    return pickle.dumps(pickle.loads(blob), protocol=pickle.HIGHEST_PROTOCOL)


def assert_same_state(a: Any, b: Any, path: str = "state") -> None:
    """Fail, naming the first place they differ, unless ``a`` and ``b`` hold the same values of the same types."""
    assert type(a) is type(b), f"{path}: {type(a).__name__} != {type(b).__name__}"
    if isinstance(a, dict):
        assert list(a) == list(b), f"{path}: keys {list(a)} != {list(b)}"
        for k in a:
            assert_same_state(a[k], b[k], f"{path}[{k!r}]")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), f"{path}: length {len(a)} != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b)):
            assert_same_state(x, y, f"{path}[{i}]")
    elif type(a).__module__.startswith("torch"):
        import torch

        assert a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b), f"{path}: tensors differ"
    elif type(a).__module__.startswith("numpy") and hasattr(a, "shape"):
        import numpy as np

        assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=a.dtype.kind == "f"), f"{path}: arrays differ"
    elif isinstance(a, bytes) and a.startswith(PICKLE) and b.startswith(PICKLE):
        # a river blob: the same object may pickle to other bytes (the pickler shares strings it has met by identity)
        assert _repickled(a) == _repickled(b), f"{path}: the pickled objects differ"
    elif isinstance(a, float) and math.isnan(a):
        assert math.isnan(b), f"{path}: nan != {b!r}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"
