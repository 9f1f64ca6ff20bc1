"""`make bench`: phonesync against two baselines, in the same run, on the same sandbox.

For each scenario (bench/scenarios/E*.toml) the harness generates one night of synthetic data,
then for each contender — phonesync, a fixed-concurrency aiohttp script, a naive sequential
`requests` script (on a subset, scaled linearly) — starts a fresh sandbox process from the same
files with the scenario's knobs, runs the contender in its own process, measures wall time, CPU
and peak RSS, reads the server's request log, and verifies the final FHIR state. Results go to
var/bench/results.json and var/bench/results.md (the table for docs/benchmarks.md).

    python bench/run.py                        # every scenario, 20,000 rows
    python bench/run.py --scenarios E1,E2 --rows 5000
    python bench/run.py --quick                # E0, 200 rows: a smoke run of the harness
    python bench/run.py --scenarios E6 --sweep E6=8,16,32,64,128   # fixed-concurrency sweep
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from harness import contenders, data, passes, ramp, report, scenarios, sweep, verify
from harness.sandbox import Sandbox

ROOT = Path(__file__).resolve().parent.parent
CONTENDERS = ("phonesync", "fixed_async", "naive")
API_KEY = ("x-api-key", "sandbox-key")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--scenarios", help="comma-separated, e.g. E1,E2 (default: all but E0)")
    p.add_argument("--rows", type=int, help="sheet rows (default: the scenario's, else 20,000)")
    p.add_argument(
        "--rows-for", action="append", default=[], metavar="NAME=N", help="rows for one scenario"
    )
    p.add_argument(
        "--phonesync-env",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra PHONESYNC_* setting for the phonesync contender (default: its own defaults)",
    )
    p.add_argument(
        "--sweep",
        action="append",
        default=[],
        metavar="NAME=N,N,…",
        help="also run phonesync with PHONESYNC_PACING=fixed at each concurrency N, as contenders "
        "phonesync_fixed_N (default when phonesync runs: "
        + " ".join(f"{k}={','.join(map(str, v))}" for k, v in sweep.DEFAULT.items())
        + ")",
    )
    p.add_argument("--no-sweep", action="store_true", help="no fixed-concurrency sweep at all")
    p.add_argument("--quick", action="store_true", help="smoke run: E0, 200 rows, naive on 50")
    p.add_argument("--contenders", default=",".join(CONTENDERS))
    p.add_argument("--naive-rows", type=int, default=300, help="naive baseline's subset")
    p.add_argument("--concurrency", type=int, default=32, help="fixed_async's workers")
    p.add_argument(
        "--passes",
        type=int,
        default=passes.DEFAULT_MAX_PASSES,
        help="a baseline runs again on the rows it dropped, up to this many runs in all "
        "(1: a single run, rows it drops stay undone)",
    )
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--date", default="2024-03-15", help="business date of the synthetic night")
    p.add_argument(
        "--timeout", type=float, default=3600.0, help="per contender (all its runs), seconds"
    )
    p.add_argument("--out", type=Path, default=ROOT / "var" / "bench")
    args = p.parse_args(argv)
    if args.quick:
        args.scenarios = args.scenarios or "E0"
        args.rows = args.rows or 200
        args.naive_rows = min(args.naive_rows, 50)
    names = args.scenarios.split(",") if args.scenarios else scenarios.all_names()
    args.names = [n for n in names if n != "E0" or args.scenarios]
    args.contender_list = args.contenders.split(",")
    args.rows_by_name = {k: int(v) for k, _, v in (x.partition("=") for x in args.rows_for)}
    args.extra_env = dict(x.split("=", 1) for x in args.phonesync_env)
    try:
        args.sweeps = sweep.parse(args.sweep)
    except ValueError as exc:
        p.error(str(exc))
    if not args.sweep:  # the default sweep goes with the phonesync contender
        args.sweeps = dict(sweep.DEFAULT) if "phonesync" in args.contender_list else {}
    if args.no_sweep:
        args.sweeps = {}
    return args


def contender_list(args: argparse.Namespace, name: str) -> list[str]:
    """The contenders of one scenario: --contenders, then its sweep's `phonesync_fixed_N`."""
    fixed = [sweep.name(n) for n in args.sweeps.get(name, [])]
    return [*args.contender_list, *(c for c in fixed if c not in args.contender_list)]


def machine() -> dict[str, Any]:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), "unknown",
    )  # fmt: skip
    free = subprocess.run(["free", "-h"], capture_output=True, text=True, check=False).stdout  # noqa: S607
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],  # noqa: S607
        capture_output=True, text=True, cwd=ROOT, check=False,
    ).stdout.strip()  # fmt: skip
    return {
        "nproc": len(os.sched_getaffinity(0)),
        "cpu_model": cpu,
        "free_h": free.strip(),
        "python": platform.python_version(),
        "commit": commit,
    }


def phonesync_env(args: argparse.Namespace) -> dict[str, str]:
    """How the phonesync contender is configured beyond the sandbox's env file."""
    from phonesync.settings import Settings

    env = {"PHONESYNC_PROGRESS": "off", "PHONESYNC_LOG_LEVEL": "WARNING"}
    env["PHONESYNC_LOG_FORMAT"] = "json"
    if "sync_mode" in Settings.model_fields:
        env["PHONESYNC_SYNC_MODE"] = "daily"  # the night's rows only, as the baselines get
    return env | args.extra_env


def phonesync_concurrency(args: argparse.Namespace) -> int:
    from phonesync.settings import Settings

    default = Settings.model_fields["concurrency"].default
    return int(args.extra_env.get("PHONESYNC_CONCURRENCY", default))


def client_stats(
    contender: str, state_dir: Path, baseline_passes: list[dict[str, Any]]
) -> dict[str, Any]:
    if contender == "phonesync":
        path = state_dir / "summary.json"
        if not path.exists():
            return {}
        s = json.loads(path.read_text())
        return {
            "status": s.get("status"),
            "run_duration_s": s.get("duration_s"),
            "outcomes": s.get("outcomes"),
            "requests": s.get("requests", {}).get("total"),
            "retries": s.get("requests", {}).get("retries"),
        }
    return passes.merged_stats(state_dir, baseline_passes)


def run_contender(
    args: argparse.Namespace,
    sc: scenarios.Scenario,
    night: data.Night,
    contender: str,
    run_dir: Path,
    ledger_from: Path | None,
) -> dict[str, Any]:
    fixed = sweep.fixed_concurrency(contender)  # phonesync_fixed_N: phonesync at fixed N
    kind = "phonesync" if fixed is not None else contender
    state = run_dir / contender
    shutil.rmtree(state, ignore_errors=True)
    if kind == "phonesync" and ledger_from is not None:
        shutil.copytree(ledger_from, state)  # the delta night: last night's ledger
        (state / "summary.json").unlink(missing_ok=True)
    limit = min(args.naive_rows, len(night.work)) if contender == "naive" else None
    targets = night.targets(limit)
    sandbox = Sandbox(state, run_dir / "data", args.date, scenarios.sandbox_args(sc, run_dir))
    sandbox.start()
    try:
        settings = phonesync_env(args) | (sweep.env(fixed) if fixed else {})
        env = os.environ | settings
        if sc.kill_at_half:
            env["PHONESYNC_LOCK_STALE_S"] = "31"  # > the 30 s heartbeat: a dead run's lock ages out
        half = max(1, len(targets) // 2)
        kill_when = (lambda: sandbox.writes() >= half) if sc.kill_at_half else None
        load_before = os.getloadavg()[0]
        server_cpu0 = sandbox.cpu_s()
        started_at = time.monotonic()  # the sandbox stamps answers on the same CLOCK_MONOTONIC
        baseline_passes: list[dict[str, Any]] = []
        if kind == "phonesync":
            cmd = contenders.phonesync_cmd(
                sandbox.env_file, args.date, state / "summary.json",
                from_source=ledger_from is not None,
            )  # fmt: skip
            measured = contenders.run(
                cmd, state / "client.log", env, timeout_s=args.timeout,
                kill_when=kill_when, restart_while_busy=True,
            )  # fmt: skip
        else:

            def command_for(work: Path, stats: Path, rows: int | None) -> list[str]:
                return contenders.baseline_cmd(
                    contender, sandbox.env_file, work, stats, rows, args.concurrency
                )

            measured, baseline_passes = passes.run(
                command_for, run_dir / "data" / "work.csv", limit, limit or len(night.work),
                state, env, timeout_s=args.timeout, kill_when=kill_when, max_passes=args.passes,
            )  # fmt: skip
        server_cpu = sandbox.cpu_s() - server_cpu0
        summary = sandbox.summary()
    finally:
        sandbox.stop()
    correctness = verify.check(summary, targets)
    reads, writes = night.minimum_requests(limit)
    concurrency = fixed or {"naive": 1, "fixed_async": args.concurrency}.get(
        contender, phonesync_concurrency(args)
    )
    b = scenarios.bound(sc.knobs, reads, writes, concurrency, max(measured.cpu_s, server_cpu))
    requests = summary["requests"]
    total = max(1, requests["total"])
    climb = ramp.ramp(requests.get("per_second"), sc.knobs, started_at)
    result: dict[str, Any] = {
        "work_rows": limit or len(night.work),
        "expected_updates": len(targets),
        "wall_s": measured.wall_s,
        "load_avg_1m": [load_before, os.getloadavg()[0]],
        "timed_out": measured.timed_out,
        "exit_codes": measured.exit_codes,
        "killed_at_s": measured.killed_at_s,
        "updates_per_s": correctness["ok"] / measured.wall_s,
        "bound": {
            "seconds": b.seconds,
            "kind": b.kind,
            "rate_s": b.rate_s,
            "latency_s": b.latency_s,
            "cpu_s": b.cpu_s,
            "min_reads": reads,
            "min_writes": writes,
            "concurrency": concurrency,
        },
        "efficiency": b.seconds / measured.wall_s,
        "server": {
            "total": requests["total"],
            "by_status": requests["by_status"],
            "by_method": requests["by_method"],
            "share_429": requests["by_status"].get("429", 0) / total,
            "longest_429_run": requests["longest_429_run"],
            "per_second": requests.get("per_second"),
            "cpu_s": server_cpu,
        },
        "time_to_90_s": climb["time_to_90_s"] if climb else None,
        "ramp": climb,
        "client": client_stats(kind, state, baseline_passes),
        **({"passes": baseline_passes} if baseline_passes else {}),
        **({"phonesync_settings": settings} if kind == "phonesync" else {}),
        "cpu_s": measured.cpu_s,
        "cpu_ms_per_update": 1000 * measured.cpu_s / max(1, len(targets)),
        "peak_rss_mb": measured.peak_rss_mb,
        "correctness": correctness,
    }
    if limit and limit < len(night.work):
        scale = len(night.work) / limit
        result |= {
            "scaled_from_rows": limit,
            "scale": scale,
            "wall_scaled_s": measured.wall_s * scale,
        }
    return result


def prepare_delta(
    args: argparse.Namespace, night: data.Night, sc: scenarios.Scenario, run_dir: Path
):
    """E11: night 1 by phonesync on a plain sandbox (untimed), then tomorrow's delta sheet."""
    prep = run_dir / "prep"
    night.write(prep / "data")
    state = prep / "phonesync"
    sandbox = Sandbox(state, prep / "data", args.date, ["--auth", "api-key"]).start()
    try:
        env = os.environ | phonesync_env(args)
        cmd = contenders.phonesync_cmd(sandbox.env_file, args.date, state / "summary.json")
        first = contenders.run(cmd, state / "client.log", env, timeout_s=args.timeout)
        written = sorted(sandbox.summary()["written"])
        after = sandbox.export(written, API_KEY)
    finally:
        sandbox.stop()
    patients = [after.get(p["id"], p) for p in night.patients]
    tomorrow = data.delta(night, sc.delta_share, args.seed, patients)
    changed = sum(1 for r in tomorrow.expected.values() if r == "updated")
    info = {"night1_wall_s": first.wall_s, "night1_exit": first.exit_codes, "changed_rows": changed}
    return tomorrow, state, info


def run_scenario(args: argparse.Namespace, name: str) -> dict[str, Any]:
    sc = scenarios.load(name)
    out: dict[str, Any] = {"title": sc.title, "knobs": sc.knobs, "auth": sc.auth}
    try:
        missing = scenarios.missing_knobs(sc)
    except Exception as exc:  # noqa: BLE001 - the CLI itself may be broken mid-edit
        out["status"] = f"not run: cannot read `phonesync sandbox` options ({exc!r})"
        return out
    if missing:
        out["status"] = "not run: knob " + ", ".join(missing) + " missing"
        return out
    rows = args.rows_by_name.get(name) or args.rows or sc.rows or 20000
    run_dir = args.out / name
    shutil.rmtree(run_dir, ignore_errors=True)
    run_dir.mkdir(parents=True)
    night = data.synthetic(args.seed, rows, date.fromisoformat(args.date))
    ledger_from = None
    if sc.delta_share:
        night, ledger_from, out["delta"] = prepare_delta(args, night, sc, run_dir)
    night.write(run_dir / "data")
    out |= {"status": "ran", "rows": rows, "work_rows": len(night.work), "contenders": {}}
    out["expected_outcomes"] = night.outcome_counts()
    for contender in contender_list(args, name):
        print(f"[{name}] {contender} …", flush=True)
        try:
            result = run_contender(args, sc, night, contender, run_dir, ledger_from)
        except Exception as exc:  # noqa: BLE001 - one contender's crash must not lose the rest
            result = {"error": f"{type(exc).__name__}: {exc}"}
        out["contenders"][contender] = result
        if "error" not in result:
            wall = result.get("wall_scaled_s", result["wall_s"])
            ttl = result["time_to_90_s"]
            climb = "" if result["ramp"] is None else f", time_to_90_s={ttl}"
            correct = result["correctness"]["correct"]
            print(f"[{name}] {contender}: {wall:.1f} s, correct={correct}{climb}", flush=True)
    mine = out["contenders"].get("phonesync", {})
    for contender, result in out["contenders"].items():
        if contender != "phonesync" and "error" not in result and "wall_s" in mine:
            wall = result.get("wall_scaled_s", result["wall_s"])
            result["phonesync_speedup"] = wall / mine["wall_s"]
    swept = sweep.summarise(out["contenders"])
    if swept is not None:
        out["sweep"] = swept
        print(f"[{name}] sweep: best fixed {swept['best_fixed']}, "
              f"adaptive_vs_best_fixed={swept['adaptive_vs_best_fixed']}", flush=True)  # fmt: skip
    return out


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # run the `finally`s: stop children
    args.out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": " ".join([Path(sys.executable).name, "bench/run.py", *(argv or sys.argv[1:])]),
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_avg_start": os.getloadavg(),
        "machine": machine(),
        "knobs_present": sorted(scenarios.profile_fields()),
        "sandbox_has_scenario_option": "--scenario" in scenarios.sandbox_options(),
        "scenarios": {},
    }
    started = time.monotonic()
    for name in args.names:
        results["scenarios"][name] = run_scenario(args, name)
        results["load_avg_now"] = os.getloadavg()
        results["elapsed_s"] = time.monotonic() - started
        (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
        (args.out / "results.md").write_text(report.markdown(results))
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    (args.out / "results.json").write_text(json.dumps(results, indent=2, default=str))
    table = report.markdown(results)
    (args.out / "results.md").write_text(table)
    print(table)
    ran = [s for s in results["scenarios"].values() if s.get("status") == "ran"]
    broken = any("error" in r for s in ran for r in s["contenders"].values())
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
