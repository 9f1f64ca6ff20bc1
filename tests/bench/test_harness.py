"""The benchmark harness end to end: one tiny scenario, three contenders, real processes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_quick_run_measures_and_verifies_every_contender(tmp_path: Path) -> None:
    """`run.py --quick` runs E0 for all contenders, checks the server state, writes results."""
    cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--quick", "--rows", "80"]
    cmd += ["--naive-rows", "10", "--out", str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    results = json.loads((tmp_path / "results.json").read_text())
    e0 = results["scenarios"]["E0"]
    assert e0["status"] == "ran"
    runs = e0["contenders"]
    assert set(runs) == {"phonesync", "fixed_async", "naive"}
    mine = runs["phonesync"]
    assert mine["correctness"]["correct"], mine["correctness"]
    assert mine["correctness"]["expected_updates"] > 50
    assert mine["server"]["total"] >= 2 * mine["correctness"]["expected_updates"]
    assert mine["cpu_s"] > 0
    assert mine["peak_rss_mb"] > 10
    for name in ("fixed_async", "naive"):
        c = runs[name]["correctness"]
        assert c["ok"] == c["expected_updates"] > 0, (name, c)
        assert c["duplicate_writes"] == 0, (name, c)
        assert runs[name]["phonesync_speedup"] > 0
    assert runs["naive"]["scaled_from_rows"] == 10
    table = (tmp_path / "results.md").read_text()
    assert "| E0 | phonesync |" in table
    assert "| E0 | naive |" in table
