"""A run's recovery directory is checked before Bytewax opens it: a damaged partition is one line, not a Rust panic."""

from __future__ import annotations

from pathlib import Path

import pytest
from bytewax.recovery import init_db_dir

from stream_learner.app.recovery_dir import damaged_partitions, open_recovery_dir
from stream_learner.errors import ConfigError


def test_a_new_directory_is_initialised_and_found_sound(tmp_path: Path) -> None:
    directory = tmp_path / "recovery"
    open_recovery_dir(directory, partitions=2)
    assert sorted(p.name for p in directory.glob("part-*.sqlite3")) == ["part-0.sqlite3", "part-1.sqlite3"]
    assert damaged_partitions(directory) == []


def test_a_partition_with_flipped_bits_or_cut_short_is_named_in_one_line(tmp_path: Path) -> None:
    directory = tmp_path / "recovery"
    directory.mkdir(mode=0o700)
    init_db_dir(directory, 3)
    flipped = bytearray((directory / "part-1.sqlite3").read_bytes())
    for i in range(100, len(flipped), 509):
        flipped[i] ^= 0xFF
    (directory / "part-1.sqlite3").write_bytes(bytes(flipped))
    whole = (directory / "part-2.sqlite3").read_bytes()
    (directory / "part-2.sqlite3").write_bytes(whole[: len(whole) // 3])
    assert [name for name, _ in damaged_partitions(directory)] == ["part-1.sqlite3", "part-2.sqlite3"]
    with pytest.raises(ConfigError) as refused:
        open_recovery_dir(directory, partitions=3)
    assert "\n" not in str(refused.value)
    assert str(refused.value).startswith(f"the recovery directory {directory} is damaged: part-1.sqlite3: ")
    assert "(and 1 more); restore it from a backup, or move the directory away" in str(refused.value)
