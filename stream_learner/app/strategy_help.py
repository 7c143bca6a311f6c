"""``stream-learner strategies NAME``: one strategy's parameters, with their defaults and one line each.

The parameters are the strategy constructor's; each line is the parameter's
entry in a Google-style ``Args:`` section of the class or constructor
docstring, else its annotated type.

>>> class Demo:
...     '''Does demo things.
...
...     Args:
...         size: how many examples are kept.
...     '''
...     def __init__(self, size: int = 10, mode: str = "a") -> None: ...
>>> print(parameters_table(Demo))
PARAMETER  DEFAULT  DESCRIPTION
size       10       how many examples are kept.
mode       'a'      str
"""

from __future__ import annotations

import inspect
import re
from typing import Any

from strategies.registry import StrategyInfo, available, load_class
from stream_learner.errors import StrategyLoadError


def describe_strategy(name: str) -> str:
    """The strategy's description, families, origin and parameters table; an unknown name raises :class:`StrategyLoadError`."""
    info = next((i for i in available() if i.name == name), None)
    if info is None:
        known = ", ".join(i.name for i in available()) or "none"
        raise StrategyLoadError(f"unknown strategy {name!r}; installed strategies: {known}")
    return "\n".join([_heading(info), "", parameters_table(load_class(name)), "", f"set one with --strategy {name} --strategy-param K=V"])


def _heading(info: StrategyInfo) -> str:
    return f"{info.name}: {info.description}\nfamilies: {', '.join(info.families) or '-'}   origin: {info.origin}   ({info.target})"


def parameters_table(cls: type) -> str:
    """A plain text table of the constructor's parameters (``*args`` and ``**kwargs`` left out)."""
    described = {**_args_section(inspect.getdoc(cls)), **_args_section(inspect.getdoc(vars(cls).get("__init__")))}
    rows = [("PARAMETER", "DEFAULT", "DESCRIPTION")]
    for p in inspect.signature(cls).parameters.values():
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        default = "(required)" if p.default is p.empty else repr(p.default)
        rows.append((p.name, default, described.get(p.name) or _annotation(p.annotation)))
    if len(rows) == 1:
        return "no parameters"
    widths = [max(len(r[c]) for r in rows) for c in range(2)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]}".rstrip() for r in rows)


def _annotation(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "-"
    return annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))


def _args_section(doc: str | None) -> dict[str, str]:
    """``name -> first line`` of a Google-style ``Args:`` section.

    >>> _args_section("Summary.\\n\\nArgs:\\n    lam: the penalty's weight.\\n        More on it.\\n    k (int): how many.\\n\\nReturns:\\n    x")
    {'lam': "the penalty's weight.", 'k': 'how many.'}
    """
    found: dict[str, str] = {}
    inside, indent = False, None
    for line in (doc or "").splitlines():
        if re.fullmatch(r"(Args|Arguments|Parameters):", line.strip()):
            inside = True
            continue
        if not inside or not line.strip():
            continue
        depth = len(line) - len(line.lstrip())
        if depth == 0:
            break  # the next section
        indent = indent or depth  # the entries' indentation; deeper lines continue an entry
        entry = re.fullmatch(r"(\w+)(?:\s*\([^)]*\))?:\s*(.*)", line.strip()) if depth == indent else None
        if entry:
            found[entry.group(1)] = entry.group(2).strip()
    return found
