"""`phonesync plan` and `phonesync worker`: the scale-out commands (docs/scale-out.md).

    phonesync plan --date D --workers N      # once: read the sheet, queue the work
    phonesync worker --date D                # N times (a Kubernetes Indexed Job)
    phonesync plan --date D --finish         # operator: end an open run whose workers are gone

Exit codes as for `run`: 0 succeeded (or this worker did its share), 1 completed with failures
(reported by the process that finished the run), 2 configuration, 3 sheet, 4 FHIR server,
5 the date is locked by another run.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import Coroutine
from datetime import date
from typing import Any, TypeVar

from phonesync.cli import (
    DATE_HELP,
    STATUS_EXIT,
    _date,
    _setup,
    business_date,
    clock_of,
    fresh_summary,
)
from phonesync.settings import Settings

log = logging.getLogger("phonesync.scaleout")
T = TypeVar("T")

EXIT_OK = 0


def add_scaleout_parsers(sub: Any) -> None:
    """Register `plan` and `worker` on the CLI's sub-parsers."""
    plan = sub.add_parser("plan", help="scale-out: read and plan a night once, queue its work")
    plan.add_argument("--date", type=_date, help=DATE_HELP)
    plan.add_argument(
        "--workers", type=int, default=1, help="how many workers share the run (rate budget)"
    )
    plan.add_argument(
        "--finish",
        action="store_true",
        help="finish the date's open scale-out run now (unworked rows: failed)",
    )
    plan.add_argument("--summary-json", metavar="PATH", help="write the run summary here")
    plan.add_argument("--trigger", default="manual", help=argparse.SUPPRESS)

    worker = sub.add_parser("worker", help="scale-out: work on the date's queued run")
    worker.add_argument("--date", type=_date, help=DATE_HELP)
    worker.add_argument(
        "--worker-id",
        default=os.environ.get("JOB_COMPLETION_INDEX"),
        help="a name for logs (default: $JOB_COMPLETION_INDEX); host:pid is appended",
    )
    worker.add_argument(
        "--wait-s",
        type=float,
        default=600.0,
        help="how long to wait for the plan step to queue the work [default: 600]",
    )
    worker.add_argument(
        "--summary-json", metavar="PATH", help="write the run summary here if this worker ends it"
    )


def _business_date(args: argparse.Namespace, settings: Settings) -> date:
    """`--date` or today; after today or before PHONESYNC_EARLIEST_DATE → exit 2
    (`cli.business_date`), except for `--finish`: ending an open run of any date is clean-up,
    never a sync."""
    chosen: date | None = args.date
    if chosen is not None and getattr(args, "finish", False):
        return chosen
    return business_date(chosen, settings, now=clock_of(args))


def cmd_plan(args: argparse.Namespace) -> int:
    with fresh_summary(args.summary_json):
        return _plan(args)


def _plan(args: argparse.Namespace) -> int:
    from phonesync.ledger.store import Ledger
    from phonesync.scaleout.coordinator import finish_by_operator, plan_night, require_postgres
    from phonesync.source import open_source
    from phonesync.sync import RunRequest

    settings = _setup(args)
    day = _business_date(args, settings)
    require_postgres(settings)
    if args.workers < 1:
        raise _config_error("--workers must be at least 1")
    ledger = Ledger.open(settings.database_url)
    try:
        if args.finish:
            return _report(finish_by_operator(ledger, settings, day), args.summary_json)
        settings.require_for_run()
        request = RunRequest(business_date=day, trigger=args.trigger)
        outcome = asyncio.run(plan_night(settings, ledger, open_source(settings), request,
                                         args.workers))  # fmt: skip
    finally:
        ledger.close()
    if outcome.error is not None:
        _report(outcome.summary, args.summary_json)
        print(f"phonesync: plan failed: {outcome.error}", file=sys.stderr)  # noqa: T201
        return outcome.error.exit_code
    if outcome.summary is not None:  # nothing needed the FHIR server: the run is over already
        return _report(outcome.summary, args.summary_json)
    print(f"run {outcome.run_id}: {outcome.items} rows queued for {args.workers} workers")  # noqa: T201
    return EXIT_OK


def cmd_worker(args: argparse.Namespace) -> int:
    with fresh_summary(args.summary_json):
        return _worker(args)


def _worker(args: argparse.Namespace) -> int:
    from phonesync.fhir.session import open_fhir
    from phonesync.ledger.store import Ledger
    from phonesync.scaleout.coordinator import require_postgres
    from phonesync.scaleout.worker import run_worker

    settings = _setup(args)
    day = _business_date(args, settings)
    require_postgres(settings)
    settings.require_for_run()
    worker_id = f"{args.worker_id or '-'}:{socket.gethostname()}:{os.getpid()}"
    ledger = Ledger.open(settings.database_url)
    try:
        work = run_worker(settings, ledger, day, worker_id, open_fhir, wait_s=args.wait_s)
        outcome = asyncio.run(_until_sigterm(work))
    finally:
        ledger.close()
    log.info("worker %s done: %d rows", worker_id, outcome.rows)
    if outcome.summary is not None:
        _report(outcome.summary, args.summary_json)
    if outcome.error is not None:
        print(f"phonesync: worker stopped: {outcome.error}", file=sys.stderr)  # noqa: T201
        return outcome.error.exit_code
    if outcome.summary is not None or outcome.rows == 0:
        return STATUS_EXIT.get(outcome.run_status or "succeeded", 1)
    return EXIT_OK


async def _until_sigterm(work: Coroutine[Any, Any, T]) -> T:
    """Run `work`; SIGTERM (Kubernetes stopping the pod) cancels it so claims are given back."""
    task = asyncio.ensure_future(work)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # not on every platform
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
    try:
        return await task
    except asyncio.CancelledError:
        raise KeyboardInterrupt from None


def _report(summary: dict[str, Any] | None, path: str | None) -> int:
    from phonesync.report import print_summary, write_summary

    if summary is None:
        return EXIT_OK
    if path:
        write_summary(path, summary)
    print_summary(summary)
    return STATUS_EXIT.get(summary["status"], 1)


def _config_error(message: str) -> Exception:
    from phonesync.errors import ConfigError

    return ConfigError(message)
