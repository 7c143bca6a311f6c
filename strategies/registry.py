"""The strategy registry: installed strategies, read from the ``stream_learner.strategies`` entry points.

>>> info = next(i for i in available() if i.name == "ewc")
>>> info.families, info.origin
(('torch',), 'stream-learner')
>>> print(table([StrategyInfo("x", ("torch",), "pkg", "Does x.", "pkg.x:X")]))
NAME  FAMILIES  ORIGIN  DESCRIPTION
x     torch     pkg     Does x.
"""

from __future__ import annotations

from stream_learner.learners.strategy import GROUP, StrategyInfo, available, load_class, load_strategies

__all__ = ["GROUP", "StrategyInfo", "available", "load_class", "load_strategies", "table"]


def table(infos: list[StrategyInfo]) -> str:
    """A plain text table: name, learner families, origin package, one-line description."""
    rows = [("NAME", "FAMILIES", "ORIGIN", "DESCRIPTION")]
    rows += [(i.name, ",".join(i.families) or "-", i.origin, i.description) for i in infos]
    widths = [max(len(r[c]) for r in rows) for c in range(3)]
    return "\n".join(f"{r[0]:<{widths[0]}}  {r[1]:<{widths[1]}}  {r[2]:<{widths[2]}}  {r[3]}".rstrip() for r in rows)
