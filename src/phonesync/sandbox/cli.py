"""Command-line glue for `phonesync sandbox` and `phonesync demo`."""

from __future__ import annotations

import argparse
import asyncio
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from phonesync.sandbox.scenario import add_knob_options, profile_from_args


def _today_jakarta() -> date:
    return datetime.now(UTC).astimezone(ZoneInfo("Asia/Jakarta")).date()


def _add_data_options(p: argparse.ArgumentParser, *, patients: int, rows: int) -> None:
    p.add_argument("--patients", type=int, default=patients, help="synthetic patients")
    p.add_argument("--rows", type=int, default=rows, help="synthetic sheet rows for the date")
    p.add_argument("--seed", type=int, default=1, help="seed of the synthetic data")
    p.add_argument(
        "--date",
        type=date.fromisoformat,
        default=None,
        help="business date of the synthetic rows (default: today, Asia/Jakarta)",
    )
    p.add_argument(
        "--write-mode",
        choices=("put", "patch", "both"),
        default="put",
        help="which FHIR write the sandbox accepts (patch = the national profile)",
    )
    p.add_argument("--auth", choices=("api-key", "oauth2"), default="api-key")
    add_knob_options(p)  # --scenario FILE.toml and one option per FhirProfile knob


def add_sandbox_parser(sub: Any) -> None:
    p = sub.add_parser("sandbox", help="serve local FHIR + Google Sheets stand-ins")
    _add_data_options(p, patients=2000, rows=2000)
    p.add_argument("--patients-file", type=Path, help="NDJSON, one FHIR Patient per line")
    p.add_argument("--sheet-file", type=Path, help="CSV (all text) or JSON {'values': [[…]]}")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--fhir-port", type=int, default=8090)
    p.add_argument("--sheets-port", type=int, default=8091)
    p.add_argument("--state-dir", type=Path, default=Path("var/sandbox"))
    p.add_argument(
        "--write-env",
        type=Path,
        default=None,
        dest="env_out",
        help="where to write the env file (default: STATE_DIR/sandbox.env)",
    )


def add_demo_parser(sub: Any) -> None:
    p = sub.add_parser("demo", help="sandbox + a run for today + the summary and a check")
    _add_data_options(p, patients=20000, rows=20000)
    p.set_defaults(latency_ms=50.0)
    p.add_argument("--concurrency", type=int, default=64, help="rows in flight")
    p.add_argument("--state-dir", type=Path, default=Path("var/demo"))
    p.add_argument(
        "--late-edits",
        type=int,
        default=50,
        help="after the night: phone cells of N updated rows edited late, then night D+1 "
        "and a replay of D-3 are run and checked",
    )
    p.add_argument(
        "--no-extra-nights",
        dest="extra_nights",
        action="store_false",
        help="only the main night: no late edits, no night D+1, no replay",
    )


def options_from_args(args: argparse.Namespace) -> Any:
    from phonesync.sandbox.runner import SandboxOptions

    profile = profile_from_args(args, seed=args.seed)
    return SandboxOptions(
        business_date=args.date or _today_jakarta(),
        patients=args.patients,
        rows=args.rows,
        seed=args.seed,
        patients_file=getattr(args, "patients_file", None),
        sheet_file=getattr(args, "sheet_file", None),
        host=getattr(args, "host", "127.0.0.1"),
        fhir_port=getattr(args, "fhir_port", 8090),
        sheets_port=getattr(args, "sheets_port", 8091),
        state_dir=args.state_dir,
        env_file=getattr(args, "env_out", None),
        write_mode=args.write_mode,
        auth=args.auth,
        profile=profile,
    )


def cmd_sandbox(args: argparse.Namespace) -> int:
    from phonesync import logs
    from phonesync.sandbox.runner import serve_forever

    logs.configure("INFO", "auto")
    asyncio.run(serve_forever(options_from_args(args)))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from phonesync.sandbox.demo import run_demo

    return run_demo(args)
