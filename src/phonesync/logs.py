"""Logging set-up: one JSON object per line (or readable console lines on a terminal).

Every record passes `MaskingFilter`, which renders the message and scrubs NIK-like and phone-like
digit runs and registered secrets with `phonesync.masking.redact` — one place, every line.
Context (run id, row number) travels as fields: `extra={...}` on a call, and `bind_run` /
`bind_row` for everything logged inside a run or a row (context variables, so concurrent rows in
one event loop each keep their own number) — `run_id` and `row` on every line that has them.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

from phonesync.masking import redact

_STANDARD = set(vars(logging.makeLogRecord({}))) | {"message", "asctime"}
_RUN_ID: ContextVar[str | None] = ContextVar("phonesync_run_id", default=None)
_ROW: ContextVar[int | None] = ContextVar("phonesync_row", default=None)


@contextmanager
def bind_run(run_id: str) -> Iterator[None]:
    """Every line logged inside (and in tasks started inside) carries `run_id`."""
    token = _RUN_ID.set(run_id)
    try:
        yield
    finally:
        _RUN_ID.reset(token)


@contextmanager
def bind_row(row: int) -> Iterator[None]:
    """Every line logged inside carries `row`, the sheet's row number."""
    token = _ROW.set(row)
    try:
        yield
    finally:
        _ROW.reset(token)


class MaskingFilter(logging.Filter):
    """Render and redact the message and every extra string field of a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in (("run_id", _RUN_ID), ("row", _ROW)):
            value = var.get()
            if value is not None and not hasattr(record, name):
                setattr(record, name, value)
        record.msg = redact(record.getMessage())
        record.args = None
        for key, value in list(vars(record).items()):
            if key not in _STANDARD and isinstance(value, str):
                setattr(record, key, redact(value))
        if record.exc_info and record.exc_info[1] is not None:
            record.exc_text = redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        return True


def _extras(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    """`{"ts": …, "level": …, "logger": …, "msg": …, <extra fields>}` per line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.msg,
        }
        payload.update(_extras(record))
        if record.exc_text:
            payload["exc"] = record.exc_text
        return json.dumps(payload, default=str, ensure_ascii=False)


class ConsoleFormatter(logging.Formatter):
    """`HH:MM:SS level  message  key=value …` for people at a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        ts = datetime.fromtimestamp(record.created, UTC).astimezone().strftime("%H:%M:%S")
        extras = " ".join(f"{k}={v}" for k, v in _extras(record).items())
        line = f"{ts} {record.levelname.lower():7} {record.msg}"
        if extras:
            line += f"  {extras}"
        if record.exc_text:
            line += "\n" + record.exc_text
        return line


def configure(level: str = "INFO", fmt: str = "auto", stream: Any = None) -> None:
    """Install the masking filter and the chosen formatter on the root logger."""
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    handler = logging.StreamHandler(stream)
    handler.addFilter(MaskingFilter())
    handler.setFormatter(JsonFormatter() if use_json else ConsoleFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        if getattr(old, "_phonesync", False):
            root.removeHandler(old)
    handler._phonesync = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
    # aiohttp's access and client loggers may print URLs with a NIK in the query
    for noisy in ("aiohttp.access", "urllib3", "google.auth", "alembic", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


class BurstLimit:
    """At most `burst` lines of one kind per `window_s`; the rest are counted, and one line says
    how many were left out when the window ends (at the next line of that kind, or `flush`).

    For lines that come by the hundred in a second when the server stalls (one retry warning
    per request in flight): the first few say what happened, the count says how much, and the
    log stays readable. Metrics and the summary count every one."""

    def __init__(
        self,
        logger: logging.Logger,
        what: str,
        *,
        burst: int = 20,
        window_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger, self._what, self._burst, self._window_s = logger, what, burst, window_s
        self._clock = clock
        self._started = float("-inf")
        self._shown = self._left_out = 0

    def warning(self, msg: str, *args: object) -> None:
        now = self._clock()
        if now - self._started >= self._window_s:
            self.flush()
            self._started, self._shown = now, 0
        if self._shown < self._burst:
            self._shown += 1
            self._logger.warning(msg, *args)
        else:
            self._left_out += 1

    def flush(self) -> None:
        """Say how many lines were left out since the last that was shown (if any were)."""
        if self._left_out:
            self._logger.warning(
                "%d more %s within %g s not shown (at most %d per %g s)",
                self._left_out,
                self._what,
                self._window_s,
                self._burst,
                self._window_s,
            )
            self._left_out = 0
