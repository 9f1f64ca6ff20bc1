"""Operator commands of the CLI: `phonesync serve` and `phonesync doctor` (docs/serve.md)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any


def add_ops_parsers(sub: Any) -> None:
    """Add `serve` and `doctor` to the `phonesync` sub-commands."""
    serve = sub.add_parser(
        "serve", help="long-running: nightly schedule, /healthz, /readyz, /metrics, dashboard"
    )
    serve.add_argument("--host", help="listen address (default: PHONESYNC_SERVE_HOST)")
    serve.add_argument("--port", type=int, help="listen port (default: PHONESYNC_SERVE_PORT)")
    sub.add_parser("doctor", help="pre-flight: configuration, sheet, FHIR server, clock, database")


def cmd_serve(args: argparse.Namespace) -> int:
    from phonesync.cli import _setup
    from phonesync.service import serve

    settings = _setup(args)
    overrides = {k: v for k, v in (("serve_host", args.host), ("serve_port", args.port)) if v}
    if overrides:
        settings = settings.model_copy(update=overrides)
    return serve(settings)


def cmd_doctor(args: argparse.Namespace) -> int:
    from phonesync.cli import _setup
    from phonesync.doctor import FAIL, Verdict, exit_code, render, run_doctor
    from phonesync.errors import ConfigError

    try:
        settings = _setup(args)
    except ConfigError as exc:
        sys.stdout.write(render([Verdict("configuration", FAIL, str(exc))]))
        return 1
    verdicts = asyncio.run(run_doctor(settings))
    sys.stdout.write(render(verdicts))
    return exit_code(verdicts)
