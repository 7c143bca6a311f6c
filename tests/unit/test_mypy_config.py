"""mypy.ini stays honest: what it checks exists, and each module it still excuses is named, exists and says how much is left.

Running mypy itself takes over a minute, so ``make test`` runs it as its own
step (``.venv/bin/mypy``, configured by this file), not from here.
"""

from __future__ import annotations

import configparser
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _config() -> configparser.ConfigParser:
    config = configparser.ConfigParser()
    config.read(ROOT / "mypy.ini")
    return config


def test_the_checked_packages_exist_and_the_python_version_is_the_oldest_supported() -> None:
    main = _config()["mypy"]
    packages = [p.strip() for p in main["files"].split(",")]
    assert packages and all((ROOT / p / "__init__.py").is_file() for p in packages), packages
    requires = re.search(r'requires-python\s*=\s*">=\s*([0-9.]+)', (ROOT / "pyproject.toml").read_text())
    assert requires and main["python_version"] == requires.group(1)


def test_every_excused_module_exists_and_says_how_many_errors_are_left_to_clear() -> None:
    text = (ROOT / "mypy.ini").read_text()
    for section in _config().sections():
        if not section.startswith("mypy-"):
            continue
        module = section.removeprefix("mypy-")
        path = ROOT / (module.replace(".", "/") + ".py")
        assert path.is_file() or (path.with_suffix("") / "__init__.py").is_file(), f"[{section}] names no module: drop it"
        comment = re.search(rf"^\[{re.escape(section)}\]\n# to clear: (\d+) errors? \(", text, re.M)
        assert comment and int(comment.group(1)) > 0, f"[{section}] needs its '# to clear: N errors (date)' line"
