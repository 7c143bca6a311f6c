"""The JSONL sink's writer: byte-identical files, resume truncation, failures that stick, and no process of its own."""

from __future__ import annotations

import datetime
import enum
import logging
import subprocess
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.files import JsonlSink, _JsonlPartition
from connectors.jsonl_writer import JsonlWriter
from stream_learner.errors import SinkError
from stream_learner.predictions import Predictions

OPTION = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE


def _in_process(batches: list[list[Any]]) -> bytes:
    """Each record of each item of each batch, encoded in order with the sink's options (a Predictions' records as its ``records_of``)."""
    from stream_learner.predictions import records_of

    return b"".join(orjson.dumps(record, option=OPTION) for items in batches for item in items for record in records_of(item))


class Colour(enum.Enum):
    RED = "red"


class Label(str):
    """A str subclass: orjson writes it as a string."""


MIXED = [
    [
        Predictions("k1", 1.5, [("in:0:0", True, {False: 0.25, True: 0.75}, 3, 1), ("in:0:1", None, None, 0, 0)]),
        [{"type": "metrics", "key": "k1", "accuracy": 0.5, "nested": {"a": [1, 2.5, None, True], "é": "ü"}, 7: "int key", None: False}],
    ],
    [
        [],
        [{"float key": {0.5: 1, 2: [{}]}, "big": 2**62, "neg": -1e-300, "tuple": (1, "x")}, {"empty": {}}],
        Predictions("k2", 2.0, [("in:0:2", "cat", {"cat": 0.9, "dog": 0.1}, 1, 0)]),
        Predictions("k3", 3.0, []),
    ],
]


def test_the_file_is_byte_identical_to_orjsons_encoding_and_snapshot_is_its_size(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "out.jsonl"  # the folder is created
    part = _JsonlPartition(path, None)
    sizes = []
    for items in MIXED:
        part.write_batch(items)
        sizes.append(part.snapshot())
        assert sizes[-1] == path.stat().st_size  # in the file when snapshot returns, before any close
    part.close()
    expected = _in_process(MIXED)
    assert path.read_bytes() == expected
    assert sizes == [len(_in_process(MIXED[:1])), len(expected)]


def test_values_of_other_types_are_written_as_orjson_writes_them(tmp_path: Path) -> None:
    odd = [[{"at": datetime.datetime(2024, 5, 6, 7, 8, 9, 10), "colour": Colour.RED, "label": Label("x"), Label("k"): 1}]]
    writer = JsonlWriter(tmp_path / "out.jsonl")
    writer.write(odd)
    writer.close()
    assert (tmp_path / "out.jsonl").read_bytes() == b'{"at":"2024-05-06T07:08:09.000010","colour":"red","label":"x","k":1}\n'


def test_resume_truncates_to_the_recovered_size_and_appends(tmp_path: Path) -> None:
    path = tmp_path / "out.jsonl"
    path.write_bytes(b'{"a":1}\n{"b":2}\n{"written after the epoch":3}\n')
    part = _JsonlPartition(path, 16)
    assert path.read_bytes() == b'{"a":1}\n{"b":2}\n'  # at once
    assert part.snapshot() == 16
    part.write_batch([[{"c": 3}]])
    assert part.snapshot() == 24
    part.close()
    assert path.read_bytes() == b'{"a":1}\n{"b":2}\n{"c":3}\n'


def test_a_record_orjson_refuses_fails_the_call_the_failure_sticks_and_close_only_logs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "out.jsonl"
    part = JsonlSink(path).build_part("out", path.name, None)
    part.write_batch([[{"ok": 1}]])
    assert part.snapshot() == 9
    with pytest.raises(SinkError, match=r"cannot encode a record for .*out\.jsonl: Type is not JSON serializable: set"):
        part.write_batch([[{"a set": {1, 2}}]])
    with pytest.raises(SinkError, match="Type is not JSON serializable: set"):
        part.snapshot()  # the failure sticks
    with pytest.raises(SinkError, match="Type is not JSON serializable: set"):
        part.write_batch([[{"ok": 2}]])
    with caplog.at_level(logging.ERROR):
        part.close()  # raised already: Bytewax calls close while unwinding, where raising aborts
    assert not caplog.records
    assert path.read_bytes() == b'{"ok":1}\n'


def test_a_new_run_empties_the_file(tmp_path: Path) -> None:
    path = tmp_path / "dead_letters.jsonl"
    path.write_bytes(b"old\n")
    part = JsonlSink(path).build_part("out", path.name, None)
    assert path.read_bytes() == b""
    part.write_batch([])
    part.write_batch([[]])
    assert part.snapshot() == 0
    part.close()


def test_a_numpy_value_is_refused_by_name(tmp_path: Path) -> None:
    numpy = pytest.importorskip("numpy")
    writer = JsonlWriter(tmp_path / "out.jsonl")
    with pytest.raises(SinkError, match="Type is not JSON serializable: numpy.float64"):
        writer.write([[{"p": numpy.float64(0.5)}]])  # orjson refuses numpy without OPT_SERIALIZE_NUMPY
    writer.close()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_a_full_disk_is_a_sink_error_and_a_failure_first_met_by_close_is_logged(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    writer = JsonlWriter("/dev/full")
    with pytest.raises(SinkError, match="cannot write /dev/full: No space left on device"):
        writer.write([[{"x": "y" * 100_000}]])  # more than the file's buffer: written at once
        writer.size()
    writer.close()
    part = _JsonlPartition(Path("/dev/full"), None)
    part.write_batch([[{"x": 1}]])  # buffered
    with caplog.at_level(logging.ERROR):
        part.close()  # its flush fails: logged, not raised (Bytewax calls close while unwinding too)
    assert [r.getMessage() for r in caplog.records] == ["cannot write /dev/full: No space left on device"]


def test_a_run_writes_its_files_without_a_process_of_their_own(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from stream_learner.app.runner import RunOptions, run

    started: list[Any] = []
    popen = subprocess.Popen

    def recording_popen(args: list[str], **kwargs: Any) -> Any:
        started.append(args)
        return popen(args, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    summary = run(RunOptions(source="synthetic:sea?every=500&concepts=3", out=tmp_path, progress=False, console=False))
    assert started == []
    assert len((tmp_path / "predictions.jsonl").read_bytes().splitlines()) == summary["predictions"] == 1500
    metrics = [orjson.loads(line) for line in (tmp_path / "metrics.jsonl").read_bytes().splitlines()]
    assert metrics[-1]["type"] == "metrics" and metrics[-1]["labelled"] == 1500
