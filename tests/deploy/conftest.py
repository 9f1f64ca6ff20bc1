"""Fixtures of the deploy/ tests."""

from __future__ import annotations

import pytest

from .support import tool_or_skip, validate


@pytest.fixture
def promtool() -> str:
    """Path of promtool (Debian's prometheus package); skipped outside CI when absent."""
    return str(tool_or_skip(validate.promtool))
