"""The README's Python examples run as written (doctest), and its links to files in the repository resolve."""

from __future__ import annotations

import doctest
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def _python_blocks(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_python_examples_run_as_written() -> None:
    blocks = _python_blocks(README.read_text())
    assert blocks, "the README has no Python example"
    parser, runner = doctest.DocTestParser(), doctest.DocTestRunner(optionflags=doctest.ELLIPSIS)
    for number, block in enumerate(blocks):
        test = parser.get_doctest(block, {}, f"README python block {number}", str(README), 0)
        assert test.examples, f"README python block {number} has no >>> example"
        result = runner.run(test)
        assert result.failed == 0, f"README python block {number}: {result.failed} of {result.attempted} examples failed (output above)"


def test_the_links_to_repository_files_resolve() -> None:
    targets = re.findall(r"\]\(((?!https?://|#)[^)#]+)(?:#[^)]*)?\)", README.read_text())
    assert targets
    missing = [target for target in targets if not (ROOT / target).exists()]
    assert missing == []
