"""Loads deploy/validate.py (not a package) for the tests, and the CI rule for missing tools."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _load() -> ModuleType:
    path = ROOT / "deploy" / "validate.py"
    spec = importlib.util.spec_from_file_location("deploy_validate", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


validate = _load()


def tool_or_skip(get_tool: Callable[[], Any]) -> Any:
    """Call a tool finder; a missing tool skips the test here and fails it under CI."""
    try:
        return get_tool()
    except validate.Skip as missing:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{missing} — CI must have it (.ci/run installs it)")
        pytest.skip(str(missing))
