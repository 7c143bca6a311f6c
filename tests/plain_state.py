"""A learner's state as nested plain values, for comparing two states in tests."""

from __future__ import annotations

import collections
import pickle
from typing import Any

import numpy as np
import torch


def plain(x: Any, seen: frozenset[int] = frozenset()) -> Any:
    """``x`` as nested plain values, river blobs unpickled and objects as their class and attributes.

    Two equal states then compare equal even where one shares an object (a
    feature name) that the other holds twice: their pickles differ in bytes.
    """
    if isinstance(x, bytes) and x[:1] == b"\x80":
        return plain(pickle.loads(x), seen)
    if isinstance(x, (str, int, bool, bytes, type(None))):
        return x
    if isinstance(x, float):
        return repr(x)  # exact, and nan equals nan
    if id(x) in seen:
        return "<cycle>"
    seen = seen | {id(x)}
    if isinstance(x, np.ndarray):
        return ("ndarray", str(x.dtype), x.shape, x.tobytes())
    if isinstance(x, torch.Tensor):
        return plain(x.detach().cpu().numpy(), seen)
    if isinstance(x, dict):
        return ("dict", [(plain(k, seen), plain(v, seen)) for k, v in x.items()])
    if isinstance(x, (list, tuple, collections.deque)):
        return (type(x).__name__, [plain(v, seen) for v in x])
    if isinstance(x, (set, frozenset)):
        return ("set", sorted(repr(plain(v, seen)) for v in x))
    fields = getattr(x, "__dict__", None)
    if fields is None:
        fields = {name: getattr(x, name) for name in getattr(x, "__slots__", ()) if hasattr(x, name)} or None
    if fields is None:
        return (type(x).__qualname__, pickle.dumps(x))
    return (type(x).__qualname__, plain(fields, seen))
