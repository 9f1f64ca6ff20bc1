"""The `phonesync` command: a thin entry point that parses arguments, builds `Settings` once,
calls one function per command and turns the outcome into a documented exit code.

Exit codes of `run`/`retry` (README, docs/operations.md): 0 succeeded · 1 completed with failures
above the threshold (or aborted) · 2 configuration error · 3 source unavailable · 4 FHIR server
unavailable or unauthorised · 5 another run is already in progress ·
6 the ledger database cannot be reached.

SIGTERM/SIGINT during `run`/`retry` stop the run cleanly (`sync.StopRequest`): status `aborted`,
every row recorded, the summary written, exit 1.

The file at `--summary-json` is always this command's: written at the end of every run (also a
`failed` one, e.g. the ledger lost mid-run: exit 6), and removed when the command stops before a
run could produce a summary (exit 2, 5, 6 before the run), so that an earlier run's summary never
passes for tonight's (`fresh_summary`); so does a command line argparse refuses (exit 2:
`remove_named_summaries` finds the path in the words given).

A run that will replay a stored input (a past date, a retry) says so on stderr before it starts
(`replay_notice`): the sheet's current contents are then not read unless `--from-source`.

A business date after today in the job's zone (`run/plan/worker --date`, or a retried run's date)
is refused with exit 2 before any work (`business_date`), and so is one before
`PHONESYNC_EARLIEST_DATE` (default 2022-01-01: `1900-01-01` is a typo, not a night to sync). The
clock is `main(now=…)`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import csv
import io
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from phonesync import __version__
from phonesync.errors import ConfigError, PhonesyncError
from phonesync.outcomes import Outcome
from phonesync.settings import ENV_FILE_VARIABLE, ENV_PREFIX, Settings, find_env_file

log = logging.getLogger("phonesync.cli")

EXIT_OK, EXIT_FAILURES, EXIT_CONFIG = 0, 1, 2
STATUS_EXIT = {"succeeded": 0, "completed_with_failures": 1, "aborted": 1}
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


#: The help text of every `--date` that names a business date.
DATE_HELP = (
    "business date YYYY-MM-DD, today or earlier, not before PHONESYNC_EARLIEST_DATE "
    "(default: today in PHONESYNC_TIMEZONE)"
)
_FUTURE = "a business date cannot be in the future"
_TOO_OLD = "a business date that early is implausible (a typo?)"


def utc_now() -> datetime:
    return datetime.now(UTC)


def business_date(
    chosen: date | None,
    settings: Settings,
    *,
    now: Callable[[], datetime] = utc_now,
    what: str | None = None,
) -> date:
    """`chosen`, or today in the job's zone; a date after today there, or one before
    `PHONESYNC_EARLIEST_DATE`, → `ConfigError` (exit 2).

    `what` begins the error line (default `--date YYYY-MM-DD is`); the rest names today and
    the zone: "… after today (2024-03-15 in Asia/Jakarta): a business date cannot be …", or the
    floor and its setting: "… before the earliest business date 2022-01-01
    (PHONESYNC_EARLIEST_DATE): …".
    """
    zone = settings.zone
    today = now().astimezone(zone).date()
    floor, setting = settings.earliest_date, f"{ENV_PREFIX}EARLIEST_DATE"
    if chosen is None:
        if today < floor:  # the setting is in the future: no night can run
            raise ConfigError(
                f"today ({today.isoformat()} in {zone.key}) is before the earliest business date "
                f"{floor.isoformat()} ({setting}): check {setting}"
            )
        return today
    named = what or f"--date {chosen.isoformat()} is"
    if chosen > today:
        raise ConfigError(f"{named} after today ({today.isoformat()} in {zone.key}): {_FUTURE}")
    if chosen < floor:
        why = f"set {setting} earlier to retry it" if what else _TOO_OLD  # (a retried run)
        raise ConfigError(
            f"{named} before the earliest business date {floor.isoformat()} ({setting}): {why}"
        )
    return chosen


def clock_of(args: argparse.Namespace) -> Callable[[], datetime]:
    """The clock `main` was given (the real one unless a test injected another)."""
    now: Callable[[], datetime] = getattr(args, "now", utc_now)
    return now


def settings_epilog() -> str:
    """Every setting with its environment variable, for `phonesync --help`."""
    lines = [
        "settings (environment variables, or a .env file: --env-file, else the absolute path in",
        f"{ENV_FILE_VARIABLE}, else ./.env if present; secrets also as <NAME>_FILE):",
    ]
    for name, field in Settings.model_fields.items():
        default = field.get_default(call_default_factory=True)  # the ledger's: this machine's
        shown = ",".join(default) if isinstance(default, tuple) else default
        lines.append(f"  {ENV_PREFIX}{name.upper():<24} {field.description} [default: {shown}]")
    lines.append("")
    lines.append("exit codes of run/retry: 0 succeeded, 1 completed with failures, 2 configuration")
    lines.append("error or a business date after today or before PHONESYNC_EARLIEST_DATE, 3 sheet")
    lines.append("unavailable, 4 FHIR server unavailable, 5 another run in progress, 6 ledger")
    lines.append("database unreachable")
    return "\n".join(lines)


def _date(value: str) -> date:
    try:
        if len(value) != 10 or value[4] != "-" or value[7] != "-":
            raise ValueError(value)
        return date.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {value!r}") from None


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"not a positive whole number: {value!r}")
    return number


def _summary_path(value: str) -> str:
    """Checked before the run starts: a night must not fail after its writes for want of a path.

    Not a directory, and really writable: the file is opened for appending (created, then
    removed again when it did not exist), so `/proc/x` or a read-only mount fail here, exit 2.
    """
    path = Path(value).expanduser()
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{value} is a directory, not a file for the summary")
    existed = path.exists()
    try:
        with path.open("a", encoding="utf-8"):
            pass
    except OSError as exc:
        raise argparse.ArgumentTypeError(
            f"cannot write the summary to {value}: {exc.strerror or exc}"
        ) from None
    if not existed:
        path.unlink(missing_ok=True)
    return str(path)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="phonesync",
        description="Sync patients' new phone numbers from a Google Sheet into the national "
        "FHIR server (SATUSEHAT).",
        epilog=settings_epilog(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"phonesync {__version__}")
    parser.add_argument(
        "--env-file",
        default=None,
        metavar="PATH",
        help="read settings from this file (default: the file PHONESYNC_ENV_FILE names, else "
        "./.env if present)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="one sync for a business date")
    run.add_argument("--date", type=_date, help=DATE_HELP)
    run.add_argument("--dry-run", action="store_true", help="read, validate, plan; write nothing")
    run.add_argument(
        "--summary-json", metavar="PATH", type=_summary_path, help="write the run summary here"
    )
    run.add_argument("--trigger", default="manual", help=argparse.SUPPRESS)
    _add_input_options(run)

    retry = sub.add_parser("retry", help="re-process the failed/conflict rows of a run")
    retry.add_argument("run_id")
    retry.add_argument("--dry-run", action="store_true", help="plan and read only")
    retry.add_argument(
        "--summary-json", metavar="PATH", type=_summary_path, help="write the run summary here"
    )
    _add_input_options(retry)

    sub.add_parser("keygen", help="print a new key for PHONESYNC_SNAPSHOT_KEY (Fernet)")

    report = sub.add_parser("report", help="per-row outcomes of a run (masked)")
    report.add_argument("run_id", help="a run id, or 'latest'")
    report.add_argument("--format", choices=("table", "csv", "json"), default="table")
    report.add_argument(
        "--outcome",
        action="append",
        choices=[o.value for o in Outcome],
        help="only rows with this outcome (repeatable)",
    )

    runs = sub.add_parser("runs", help="recent runs with status and counts")
    runs.add_argument("--limit", type=_positive, default=20, help="how many runs (default 20)")
    runs.add_argument("--format", choices=("table", "csv", "json"), default="table")

    from phonesync.sandbox.cli import add_demo_parser, add_sandbox_parser

    add_sandbox_parser(sub)
    add_demo_parser(sub)
    from phonesync.scaleout.commands import add_scaleout_parsers  # plan, worker

    add_scaleout_parsers(sub)
    from phonesync.opscli import add_ops_parsers  # serve, doctor

    add_ops_parsers(sub)
    from phonesync.web.dashboard.users import add_hash_password_parser

    add_hash_password_parser(sub)
    return parser


def _add_input_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--from-source",
        action="store_true",
        help="read the sheet even when the rows of this date were stored (frozen input)",
    )
    p.add_argument(
        "--format",
        choices=("table", "json"),
        default="table",
        help="json: the summary (and with --dry-run the per-row preview) as JSON on stdout",
    )


def cmd_keygen(_args: argparse.Namespace) -> int:
    """Print a new Fernet key (for PHONESYNC_SNAPSHOT_KEY); nothing is stored."""
    from phonesync.snapshot import new_key

    print(new_key())  # noqa: T201 - the command's output
    return EXIT_OK


def load_settings(args: argparse.Namespace) -> Settings:
    """`--env-file`, else PHONESYNC_ENV_FILE, else ./.env if present (`find_env_file`); a file
    named by the option or the variable must exist (exit 2)."""
    return Settings.load(env_file=find_env_file(args.env_file))


def main(argv: Sequence[str] | None = None, *, now: Callable[[], datetime] = utc_now) -> int:
    """The `phonesync` command; `now` is the clock that decides "today" (tests inject one)."""
    parser = build_parser()
    parser.set_defaults(now=now)
    words = list(sys.argv[1:] if argv is None else argv)
    try:
        args = parser.parse_args(words)
    except SystemExit as exc:
        if exc.code not in (0, None):  # an argument error (exit 2); not --help or --version
            remove_named_summaries(parser, words)
        raise
    handlers: dict[str, Callable[[argparse.Namespace], int]] = {
        "run": cmd_run,
        "retry": cmd_retry,
        "report": cmd_report,
        "runs": cmd_runs,
        "keygen": cmd_keygen,
        "sandbox": _lazy("phonesync.sandbox.cli", "cmd_sandbox"),
        "demo": _lazy("phonesync.sandbox.cli", "cmd_demo"),
        "plan": _lazy("phonesync.scaleout.commands", "cmd_plan"),
        "worker": _lazy("phonesync.scaleout.commands", "cmd_worker"),
        "serve": _lazy("phonesync.opscli", "cmd_serve"),
        "doctor": _lazy("phonesync.opscli", "cmd_doctor"),
        "hash-password": _lazy("phonesync.web.dashboard.users", "cmd_hash_password"),
    }
    try:
        return handlers[args.command](args)
    except PhonesyncError as exc:
        print(f"phonesync: {exc}", file=sys.stderr)  # noqa: T201 - the CLI's own error line
        if args.command in ("run", "retry") and getattr(args, "format", None) == "json":
            # a script reading stdout gets a document saying why, not empty input
            stopped = {"status": "failed", "exit_code": exc.exit_code, "error": str(exc)}
            sys.stdout.write(json.dumps(stopped, indent=2) + "\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def remove_named_summaries(parser: argparse.ArgumentParser, words: Sequence[str]) -> None:
    """After an argument error: remove the file(s) `--summary-json` names, as `fresh_summary`
    does for a command stopped before its run (an earlier night's summary must not pass for
    tonight's). Only for a command that has the option; directories are left alone."""
    for value in summary_paths_named(parser, words):
        path = Path(value).expanduser()
        if not path.is_dir():
            with contextlib.suppress(OSError):
                path.unlink(missing_ok=True)


def summary_paths_named(parser: argparse.ArgumentParser, words: Sequence[str]) -> list[str]:
    """The values of `--summary-json PATH` / `--summary-json=PATH` (or an abbreviation argparse
    accepts) in `words`, when the command named there has that option."""
    commands = next(
        (a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction)), {}
    )
    command: argparse.ArgumentParser | None = None
    rest: Sequence[str] = ()
    value_next = False
    for index, word in enumerate(words):  # the command: the first word not an option or its value
        if value_next:
            value_next = False
        elif word.startswith("-"):
            option = _option_named(parser, word)
            value_next = option is not None and option.nargs != 0 and "=" not in word
        else:
            command, rest = commands.get(word), words[index + 1 :]
            break
    if command is None:
        return []
    found: list[str] = []
    for index, word in enumerate(rest):
        if word == "--":  # everything after it is positional
            break
        option = _option_named(command, word)
        if option is None or option.dest != "summary_json":
            continue
        if "=" in word:
            found.append(word.split("=", 1)[1])
        elif index + 1 < len(rest) and not rest[index + 1].startswith("-"):
            found.append(rest[index + 1])
    return [value for value in found if value]


def _option_named(parser: argparse.ArgumentParser, word: str) -> argparse.Action | None:
    """The option `word` names in `parser`: exactly, or by a unique prefix (as argparse)."""
    if not word.startswith("--"):
        return parser._option_string_actions.get(word)
    name = word.split("=", 1)[0]
    options = parser._option_string_actions
    if name in options:
        return options[name]
    hits = {id(a): a for option, a in options.items() if option.startswith(name)}
    return next(iter(hits.values())) if len(hits) == 1 else None


def _lazy(module: str, name: str) -> Callable[[argparse.Namespace], int]:
    def call(args: argparse.Namespace) -> int:
        import importlib

        handler: Callable[[argparse.Namespace], int] = getattr(
            importlib.import_module(module), name
        )
        return handler(args)

    return call


def _setup(args: argparse.Namespace) -> Settings:
    from phonesync import logs

    settings = load_settings(args)
    logs.configure(settings.log_level, settings.log_format)
    return settings


@contextlib.contextmanager
def fresh_summary(path: str | None) -> Iterator[None]:
    """Remove the file at `--summary-json` as the command starts, and again when it ends
    without writing one.

    A run that started writes its summary whatever its status; a command that stops before
    (configuration, another run in progress, the ledger unreachable) raises, and whatever an
    earlier run left at the path must not be read as tonight's summary. Removed at the start
    too: a process killed outright (`kill -9`, the out-of-memory killer) runs no handler, and
    the previous night's "succeeded" stayed in place.
    """

    def remove() -> None:
        if path:
            with contextlib.suppress(OSError):
                Path(path).unlink(missing_ok=True)

    remove()
    try:
        yield
    except BaseException:
        remove()
        raise


def cmd_run(args: argparse.Namespace) -> int:
    with fresh_summary(args.summary_json):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from phonesync.sync import RunRequest

    settings = _setup(args)
    request = RunRequest(
        business_date=business_date(args.date, settings, now=clock_of(args)),
        trigger=args.trigger,
        dry_run=args.dry_run,
        from_source=args.from_source,
    )
    return execute(settings, request, args.summary_json, preview_format=args.format)


def cmd_retry(args: argparse.Namespace) -> int:
    with fresh_summary(args.summary_json):
        return _retry(args)


def _retry(args: argparse.Namespace) -> int:
    from phonesync.ledger.store import Ledger
    from phonesync.outcomes import RETRYABLE_OUTCOMES
    from phonesync.sync import RunRequest

    settings = _setup(args)
    ledger = Ledger.open(settings.database_url)
    try:
        # `latest` = the newest real run: a dry run wrote nothing, so there is nothing to retry
        parent = ledger.get_run(args.run_id, include_dry_run=False)
        counts = ledger.outcome_counts(parent.run_id) if parent is not None else {}
    finally:
        ledger.close()
    if parent is None:
        raise ConfigError(f"no run {args.run_id!r} in the ledger (see `phonesync runs`)")
    # Only a clock set back, a raised PHONESYNC_EARLIEST_DATE (or a run of an older version)
    # can leave such a run behind.
    what = f"run {parent.run_id} is for {parent.business_date.isoformat()},"
    business_date(parent.business_date, settings, now=clock_of(args), what=what)
    if parent.status != "running" and not sum(counts.get(o.value, 0) for o in RETRYABLE_OUTCOMES):
        # A retry of nothing would be a new, empty "succeeded" run, the date's latest, green
        # over a parent that may have ended completed_with_failures for other reasons. (A run
        # still running is not judged yet: its lock answers, exit 5.)
        raise ConfigError(
            f"run {parent.run_id} has no failed or conflict rows: nothing to retry (a row fixed "
            "in the sheet needs a re-run: `phonesync run --date "
            f"{parent.business_date.isoformat()} --from-source`)"
        )
    request = RunRequest(
        business_date=parent.business_date,
        trigger="retry",
        dry_run=args.dry_run,
        retry_of=parent.run_id,
        from_source=args.from_source,
    )
    return execute(settings, request, args.summary_json, preview_format=args.format)


def execute(
    settings: Settings, request: Any, summary_path: str | None, *, preview_format: str = "table"
) -> int:
    """Run a sync with the real collaborators; print the summary; return the exit code.

    A dry run also prints its per-row preview; `preview_format="json"` prints only that one
    JSON document (summary included) on stdout.
    """
    from phonesync.batch import run_observed
    from phonesync.ledger.store import Ledger
    from phonesync.progress import make_progress
    from phonesync.report import print_summary, write_summary
    from phonesync.source import open_source
    from phonesync.sync import RunOutcome, StopRequest

    settings.require_for_run()
    ledger = Ledger.open(settings.database_url)
    try:
        notice = replay_notice(settings, ledger, request, utc_now())
    except Exception:  # noqa: BLE001 - a notice never stops a run: the run reports ledger trouble
        notice = None
    if notice is not None:
        print(notice, file=sys.stderr)  # noqa: T201 - not only a log line: the operator must see it

    async def observed() -> RunOutcome:
        stop = StopRequest()  # SIGTERM (Kubernetes, activeDeadlineSeconds) or Ctrl-C
        loop = asyncio.get_running_loop()
        for sig in STOP_SIGNALS:
            loop.add_signal_handler(sig, stop.request, sig.name)
        try:
            return await run_observed(  # run_sync + metrics (Pushgateway), webhook, WhatsApp
                settings,
                ledger,
                open_source(settings),
                request,
                progress=make_progress(settings.progress),
                stop=stop,
            )
        finally:
            for sig in STOP_SIGNALS:
                loop.remove_signal_handler(sig)

    try:
        outcome = asyncio.run(observed())
    finally:
        ledger.close()
    if summary_path:
        try:
            write_summary(summary_path, outcome.summary)
        except OSError as exc:
            print(  # noqa: T201 - the CLI's own error line; the exit code stays the run's
                f"phonesync: could not write the summary file {summary_path}: "
                f"{exc.strerror or exc}; the run {outcome.stats.run_id} ended "
                f"{outcome.stats.status} and is recorded in the ledger (phonesync report "
                f"{outcome.stats.run_id})",
                file=sys.stderr,
            )
    json_preview = request.dry_run and preview_format == "json"
    if preview_format == "json" and not request.dry_run:
        sys.stdout.write(json.dumps(outcome.summary, indent=2) + "\n")
    elif not json_preview:
        print_summary(outcome.summary)
    if request.dry_run:
        from phonesync.preview import render

        sys.stdout.write(render(outcome.preview, outcome.summary, preview_format))
    if outcome.error is not None:
        print(f"phonesync: run failed: {outcome.stats.error}", file=sys.stderr)  # noqa: T201
        return outcome.error.exit_code
    for warning in outcome.stats.warnings:
        print(f"phonesync: completed with failures: {warning}", file=sys.stderr)  # noqa: T201
    if outcome.stats.status == "aborted":
        print(f"phonesync: run aborted: {outcome.stats.error}", file=sys.stderr)  # noqa: T201
    return STATUS_EXIT.get(outcome.stats.status, EXIT_FAILURES)


def replay_notice(settings: Settings, ledger: Any, request: Any, now: datetime) -> str | None:
    """The line on stderr for a run that will replay a stored input instead of reading the sheet
    (`snapshot.stored_replay`, the rule `choose_input` follows): an operator who fixed cells and
    re-runs a past date must not be left to wonder why nothing changed. None when the run reads
    the sheet.
    """
    from phonesync import snapshot

    stored = snapshot.stored_replay(
        settings, ledger, business_date=request.business_date, retry_of=request.retry_of,
        from_source=request.from_source, now=now,
    )  # fmt: skip
    if stored is None:
        return None
    read = stored.created_at.astimezone(settings.zone).strftime("%Y-%m-%d %H:%M %Z")
    return (
        f"phonesync: replaying the input stored for {request.business_date.isoformat()} "
        f"(read {read}, {stored.rows:,} row{'' if stored.rows == 1 else 's'}): the sheet's "
        "current contents are not read; use --from-source to read it again"
    )


def cmd_report(args: argparse.Namespace) -> int:
    from phonesync.ledger.store import Ledger
    from phonesync.report import render_rows

    settings = _setup(args)
    ledger = Ledger.open(settings.database_url, create=False)  # read-only: never a new file
    try:
        run = ledger.get_run(args.run_id)
        if run is None:
            raise ConfigError(f"no run {args.run_id!r} in the ledger (see `phonesync runs`)")
        outcomes = set(args.outcome) if args.outcome else None
        records = ledger.results(run.run_id, outcomes=outcomes)
    finally:
        ledger.close()
    rows = [record_as_dict(r) for r in records]
    if run.status != "succeeded" or not rows:
        # on stderr (CSV/JSON on stdout stay clean): a failed night must not look like an empty one
        note = f"run {run.run_id} ({run.business_date}): {run.status}, {len(rows)} rows recorded"
        print(f"phonesync: {note}" + (f" — {run.error}" if run.error else ""), file=sys.stderr)  # noqa: T201
    sys.stdout.write(render_rows(rows, args.format))
    return EXIT_OK


def record_as_dict(record: Any) -> dict[str, Any]:
    """Kept for callers of the CLI module; the shape lives in `report.report_row`."""
    from phonesync.report import report_row

    return report_row(record)


def cmd_runs(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

    from phonesync.ledger.store import Ledger

    settings = _setup(args)
    ledger = Ledger.open(settings.database_url, create=False)  # read-only: never a new file
    try:
        runs = [run_line(run) for run in ledger.list_runs(limit=args.limit)]
    finally:
        ledger.close()
    if args.format != "table":
        sys.stdout.write(render_lines(runs, args.format))
        return EXIT_OK
    table = Table(title="recent runs")
    for col in RUN_COLUMNS:
        # run ids are what `retry` needs: never cut them, whatever the terminal's width
        table.add_column(col, no_wrap=col == "run_id", overflow="fold")
    for line in runs:
        table.add_row(*("" if line[c] is None else str(line[c]) for c in RUN_COLUMNS))
    Console(width=max(Console().width, 160)).print(table)
    return EXIT_OK


RUN_COLUMNS = (
    "run_id",
    "date",
    "trigger",
    "status",
    "in_scope",
    "updated",
    "failed",
    "duration_s",
    "error",
)


def run_line(run: Any) -> dict[str, Any]:
    """One run as `phonesync runs` shows it (table, CSV or JSON)."""
    summary = run.summary or {}
    outcomes = summary.get("outcomes", {})
    return {
        "run_id": run.run_id,
        "date": run.business_date.isoformat(),
        "trigger": run.trigger + (" (dry)" if run.dry_run else ""),
        "status": run.status,
        "in_scope": summary.get("rows", {}).get("in_scope"),
        "updated": outcomes.get("updated"),
        "failed": outcomes.get("failed"),
        "duration_s": summary.get("duration_s"),
        "error": run.error,
    }


def render_lines(lines: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "json":
        return json.dumps(lines, indent=1, default=str) + "\n"
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=RUN_COLUMNS, lineterminator="\n")
    writer.writeheader()
    writer.writerows(lines)
    return out.getvalue()
