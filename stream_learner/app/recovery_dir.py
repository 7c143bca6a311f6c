"""The Bytewax recovery directory of a run: private, locked, initialised where new, and checked before Bytewax opens it.

Bytewax keeps each recovery partition in one SQLite file (``part-N.sqlite3``)
and stops with a Rust panic where one is damaged. Each is checked here
first (``PRAGMA quick_check``, read-only), so a damaged directory is one
line naming the file and what to do: restore it, or move it away and
resume every key from its latest snapshot.

>>> import sqlite3, tempfile
>>> from pathlib import Path
>>> directory = Path(tempfile.mkdtemp())
>>> sqlite3.connect(directory / "part-0.sqlite3").execute("CREATE TABLE t (x)").connection.close()
>>> damaged_partitions(directory)
[]
>>> _ = (directory / "part-1.sqlite3").write_bytes(b"not a database" * 100)
>>> damaged_partitions(directory)
[('part-1.sqlite3', 'file is not a database')]
"""

from __future__ import annotations

import sqlite3
from contextlib import closing
from pathlib import Path

from bytewax.recovery import RecoveryConfig, init_db_dir

from connectors.private_dir import lock_directory, private_directory
from stream_learner.errors import ConfigError

PARTITIONS = "part-*.sqlite3"


def open_recovery_dir(directory: Path, partitions: int) -> RecoveryConfig:
    """The recovery configuration of ``directory``: made private (it holds pickles) and locked; initialised with ``partitions`` where it holds none.

    Raises :class:`~stream_learner.errors.ConfigError` in one line where a partition is damaged.
    """
    directory = private_directory(directory, "recovery directory")
    lock_directory(directory, "recovery directory")  # two services on one directory would both process everything
    if not any(directory.glob(PARTITIONS)):
        init_db_dir(directory, partitions)
    damaged = damaged_partitions(directory)
    if damaged:
        name, problem = damaged[0]
        more = f" (and {len(damaged) - 1} more)" if len(damaged) > 1 else ""
        raise ConfigError(
            f"the recovery directory {directory} is damaged: {name}: {problem}{more}; restore it from a backup, or move the directory"
            " away to resume every model key from its latest snapshot (outputs since that snapshot are sent again)"
        )
    return RecoveryConfig(str(directory))


def damaged_partitions(directory: Path) -> list[tuple[str, str]]:
    """Each recovery partition of ``directory`` SQLite finds damaged, by file name, with what it says."""
    damaged = []
    for path in sorted(directory.glob(PARTITIONS)):
        try:
            with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
                problems = [row[0] for row in db.execute("PRAGMA quick_check")]
        except sqlite3.DatabaseError as exc:  # not a database at all, or unreadable
            damaged.append((path.name, str(exc)))
            continue
        if problems != ["ok"]:
            damaged.append((path.name, "; ".join(problems[:3])))
    return damaged
