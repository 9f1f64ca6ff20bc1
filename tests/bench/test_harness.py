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
        assert [p["dropped"] for p in runs[name]["passes"]] == [0]  # nothing to run again
    assert runs["naive"]["scaled_from_rows"] == 10
    table = (tmp_path / "results.md").read_text()
    assert "| E0 | phonesync |" in table
    assert "| E0 | naive |" in table


@pytest.mark.slow
def test_sweep_runs_phonesync_at_each_fixed_concurrency_on_its_own_sandbox(tmp_path: Path) -> None:
    """`--sweep E0=2,8`: two extra contenders with fixed pacing, their bounds at N, the verdict."""
    cmd = [sys.executable, str(ROOT / "bench" / "run.py"), "--scenarios", "E0", "--rows", "60"]
    cmd += ["--contenders", "phonesync", "--sweep", "E0=8,2", "--out", str(tmp_path)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=240, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    e0 = json.loads((tmp_path / "results.json").read_text())["scenarios"]["E0"]
    runs = e0["contenders"]
    assert list(runs) == ["phonesync", "phonesync_fixed_2", "phonesync_fixed_8"]
    for n in (2, 8):
        run = runs[f"phonesync_fixed_{n}"]
        assert run["correctness"]["correct"], run["correctness"]
        assert run["bound"]["concurrency"] == n
        assert run["phonesync_settings"]["PHONESYNC_PACING"] == "fixed"
        assert run["phonesync_settings"]["PHONESYNC_CONCURRENCY"] == str(n)
        assert (tmp_path / "E0" / f"phonesync_fixed_{n}" / "summary.json").exists()
    assert "PHONESYNC_PACING" not in runs["phonesync"]["phonesync_settings"]
    s = e0["sweep"]
    assert s["concurrencies"] == [2, 8]
    best = runs[f"phonesync_fixed_{s['best_fixed']}"]
    assert s["best_fixed_wall_s"] == best["wall_s"]
    assert best["wall_s"] == min(runs[f"phonesync_fixed_{n}"]["wall_s"] for n in (2, 8))
    assert s["adaptive_vs_best_fixed"] == runs["phonesync"]["wall_s"] / best["wall_s"]
    for run in runs.values():  # E0 has no limit: no ramp, but the server's series is there
        assert run["time_to_90_s"] is None
        assert run["ramp"] is None
        series = run["server"]["per_second"]
        assert sum(series["accepted"]) + sum(series["refused_429"]) == run["server"]["total"]
    table = (tmp_path / "results.md").read_text()
    assert "| E0 | phonesync_fixed_2 |" in table
    assert "adaptive ÷ best fixed" in table
    assert "time to 90 % s" not in table
