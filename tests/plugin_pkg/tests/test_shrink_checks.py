"""The plug-in runs stream-learner's strategy checks, as any third-party strategy package can."""

import pytest
from sl_shrink_strategy import Shrink

from stream_learner.checks import list_checks


@pytest.mark.parametrize("check", list_checks(Shrink), ids=str)
def test_shrink(check):
    check()
