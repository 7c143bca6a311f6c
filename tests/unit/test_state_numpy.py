"""numpy arrays and scalars in a learner state: written by dtype, shape and bytes (numpy's public API), and read back exactly; states that numpy's own pickles wrote still read."""

from __future__ import annotations

import pickle
import pickletools
import struct
from typing import Any

import numpy as np
import pytest

from stream_learner.errors import SnapshotError
from stream_learner.state import FORMAT_VERSION, LEGACY_NUMPY_GLOBALS, decode, encode, legacy_numpy_global

ARRAYS = {
    "float64 2-d": np.linspace(0, 1, 12).reshape(3, 4),
    "float32": np.arange(5, dtype=np.float32) / 3,
    "int64": np.arange(-4, 4, dtype=np.int64),
    "uint8": np.arange(250, 256, dtype=np.uint8),
    "bool": np.array([True, False, True]),
    "0-d": np.array(2.5),
    "empty 0x3": np.zeros((0, 3)),
    "non-contiguous": np.arange(24, dtype=np.int64).reshape(4, 6)[::2, 1::2],
    "fortran order": np.asfortranarray(np.arange(6.0).reshape(2, 3)),
    "big-endian": np.array([1, 2, 3], dtype=">i4"),
    "unicode": np.array(["a", "bcd"]),
    "bytes": np.array([b"xy", b"z"]),
    "datetime": np.array(["2026-12-07T12:00"], dtype="datetime64[s]"),
    "complex": np.array([1 + 2j, -3j]),
    "nan and inf": np.array([np.nan, np.inf, -np.inf, -0.0]),
}
SCALARS = {
    "float64": np.float64(0.1),
    "float32": np.float32(1 / 3),
    "int64": np.int64(-(2**62)),
    "bool": np.bool_(True),
    "empty str": np.str_(""),
    "str": np.str_("hé"),
    "bytes": np.bytes_(b"ab"),
    "timedelta": np.timedelta64(5, "ms"),
}


def _numpy_names(payload: bytes) -> list[str]:
    """The numpy modules a payload's plain part names (each string the pickle holds that starts with ``numpy``)."""
    strings = (arg for _, arg, _ in pickletools.genops(_plain_part(payload)) if isinstance(arg, str))
    return [s.partition(" ")[0] for s in strings if s.partition(".")[0] == "numpy"]  # protocol 2 names "module name"


def _plain_part(payload: bytes) -> bytes:
    (length,) = struct.unpack_from(">Q", payload, 8)
    return payload[16 : 16 + length]


def _same(a: Any, b: Any) -> bool:
    """Equal in type, dtype, shape and every value (NaN equal to NaN)."""
    return type(a) is type(b) and a.dtype == b.dtype and np.shape(a) == np.shape(b) and np.array_equal(a, b, equal_nan=a.dtype.kind in "fc")


@pytest.mark.parametrize("name", ARRAYS)
def test_an_array_comes_back_equal_writable_and_in_its_own_memory(name: str) -> None:
    array = ARRAYS[name]
    payload = encode({"version": 1, "a": array})
    assert _numpy_names(payload) == []  # no numpy function or class is named
    back = decode(payload)["a"]
    assert _same(back, array)
    assert back.flags.writeable and back.flags.c_contiguous
    back[...] = back  # writable: a part may update its arrays in place


@pytest.mark.parametrize("name", SCALARS)
def test_a_scalar_comes_back_as_the_same_numpy_scalar(name: str) -> None:
    payload = encode({"version": 1, "s": [SCALARS[name]]})
    assert _numpy_names(payload) == []
    assert _same(decode(payload)["s"][0], SCALARS[name])


def test_an_array_held_twice_is_one_array_after_decoding_too() -> None:
    array = np.arange(3.0)
    state = decode(encode({"version": 1, "a": array, "b": [array]}))
    assert state["a"] is state["b"][0]


@pytest.mark.parametrize(
    ("value", "refusal"),
    [
        (np.array([1, "a"], dtype=object), r"numpy ndarray of dtype object, which is not plain data"),
        (np.zeros(2, dtype=[("a", "i4"), ("b", "f8")]), r"numpy ndarray of dtype \[\('a', '<i4'\), \('b', '<f8'\)\], which is not plain data"),
        (np.zeros(2, dtype=[("a", "i4"), ("b", "f8")])[0], r"numpy void of dtype .*, which is not plain data"),
        (np.ma.array([1, 2]), r"holds a numpy\.ma\.MaskedArray, which is not plain data"),
        (np.random.default_rng(0), r"holds a numpy\.random\._generator\.Generator, which is not plain data"),
    ],
)
def test_numpy_objects_that_are_not_plain_data_are_refused_when_written(value: Any, refusal: str) -> None:
    with pytest.raises(TypeError, match=refusal):
        encode({"version": 1, "x": value})


def _payload(body: bytes) -> bytes:
    return b"SLSTATE" + struct.pack(">BQ", FORMAT_VERSION, len(body)) + body


class _Forged:
    """Pickles as an array written by dtype, shape and bytes, with whatever those are."""

    def __init__(self, dtype: str, shape: tuple[int, ...], data: bytes) -> None:
        self.args = (dtype, shape, data)

    def __reduce__(self) -> tuple[Any, ...]:
        from stream_learner.state import _numpy_array

        return _numpy_array, self.args


@pytest.mark.parametrize("dtype", ["|O", "f8", "<zz", "i4,f8"])
def test_a_state_naming_a_dtype_it_never_writes_is_refused_in_one_line(dtype: str) -> None:
    body = pickle.dumps({"version": 1, "a": _Forged(dtype, (2,), bytes(16))}, protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(SnapshotError, match=rf"^learner state names the numpy dtype {dtype!r}, which is not plain data$".replace("|", r"\|")):
        decode(_payload(body))


def test_an_array_whose_bytes_do_not_fill_its_shape_is_refused_as_corrupt() -> None:
    body = pickle.dumps({"version": 1, "a": _Forged("<f8", (2, 3), bytes(32))}, protocol=pickle.HIGHEST_PROTOCOL)
    with pytest.raises(SnapshotError, match=r"^learner state is corrupt: a numpy array of <f8 \(2, 3\): "):
        decode(_payload(body))


# -- states written before: numpy's own pickles --------------------------------


def _legacy_payload(state: dict[str, Any], numpy_1: bool = False) -> bytes:
    """``state`` as the releases that let numpy pickle its own objects wrote it.

    As numpy 1 wrote it (``numpy.core`` for ``numpy._core``): in protocol 3,
    which names globals as text and frames nothing, so the names can be
    rewritten (and numpy reduces arrays with ``_reconstruct`` there, with
    ``_frombuffer`` in protocol 5).
    """
    if not numpy_1:
        return _payload(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))
    return _payload(pickle.dumps(state, protocol=3).replace(b"cnumpy._core.", b"cnumpy.core."))


@pytest.mark.parametrize("numpy_1", [False, True], ids=["numpy 2", "numpy 1"])
def test_a_state_written_by_numpys_own_pickles_still_decodes(numpy_1: bool) -> None:
    # numpy's own pickles below protocol 5 keep a big-endian array's values, not its byte order
    arrays = [a for name, a in ARRAYS.items() if not (numpy_1 and name == "big-endian")]
    state = {"version": 1, "arrays": arrays, "scalars": list(SCALARS.values())}
    payload = _legacy_payload(state, numpy_1)
    assert ("numpy.core.multiarray" if numpy_1 else "numpy._core.multiarray") in _numpy_names(payload)
    back = decode(payload)
    assert len(back["arrays"]) == len(arrays) > 10 and all(_same(a, b) for a, b in zip(back["arrays"], arrays, strict=True))
    assert len(back["scalars"]) == len(SCALARS) and all(_same(a, b) for a, b in zip(back["scalars"], SCALARS.values(), strict=True))
    assert _numpy_names(encode(back)) == []  # written again, it names no numpy internals


def test_the_legacy_names_are_numpys_reconstructors_and_nothing_else() -> None:
    assert all(callable(legacy_numpy_global(module, name)) for module, name in LEGACY_NUMPY_GLOBALS)
    assert legacy_numpy_global("numpy.core.numeric", "_frombuffer") is legacy_numpy_global("numpy._core.numeric", "_frombuffer")
    assert legacy_numpy_global("numpy", "load") is None
    assert legacy_numpy_global("numpy._core.multiarray", "array") is None
    body = pickle.dumps({"f": np.load}, protocol=2)
    with pytest.raises(SnapshotError, match=r"^learner state names numpy\.load, which is not plain data$"):
        decode(_payload(body))
