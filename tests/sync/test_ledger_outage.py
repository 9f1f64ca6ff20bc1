"""The ledger (PostgreSQL) becoming unreachable mid-run, through a TCP proxy the test closes.

Exit 6 with one clear error line (no traceback, no credentials), a summary file that says
`failed` (never a stale `succeeded`), every row recorded once the ledger is back within
PHONESYNC_LEDGER_WAIT_S; a blip of a second or two is waited out and the night completes.
"""

from __future__ import annotations

import contextlib
import json
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from tests.sync.nights import DAY

from phonesync.ledger.store import Ledger
from phonesync.sandbox.fhir_server import FhirProfile
from phonesync.sandbox.local import LocalSandbox
from phonesync.sandbox.synth import SandboxData

pytestmark = pytest.mark.postgres

PASSWORD = "ledger-pw-s3cret"  # trust authentication ignores it; it must never be printed
STALE = {"run_id": "an-earlier-run", "status": "succeeded"}


class TcpProxy:
    """127.0.0.1:<port> → the PostgreSQL server; `close()` refuses and drops every connection
    (the database is gone), `open()` listens on the same port again."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = 0
        self._listener: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self.open()

    def open(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def close(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, []
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return  # closed
            try:
                server = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not listener:
                    client.close()
                    server.close()
                    return
                self._conns += [client, server]
            threading.Thread(target=self._pump, args=(client, server), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(a, selectors.EVENT_READ, b)
        sel.register(b, selectors.EVENT_READ, a)
        try:
            while True:
                for key, _ in sel.select():
                    data = key.fileobj.recv(65536)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            a.close()
            b.close()


@pytest.fixture
def proxy(empty_postgres_url: str) -> Iterator[TcpProxy]:
    url = sa.make_url(empty_postgres_url)
    p = TcpProxy((url.host or "127.0.0.1", url.port or 5432))
    yield p
    p.close()


def _through(url: str, proxy: TcpProxy) -> str:
    proxied = sa.make_url(url).set(host="127.0.0.1", port=proxy.port, password=PASSWORD)
    return proxied.render_as_string(hide_password=False)


class Night:
    """`phonesync run` in a subprocess on a ledger behind the proxy, stderr collected."""

    def __init__(self, sb: LocalSandbox, tmp_path: Path) -> None:
        self.sb = sb
        self.summary = tmp_path / "summary.json"
        self.summary.write_text(json.dumps(STALE))  # last night's file at the same path
        env = sb.write_env(tmp_path / "run.env")
        command = [sys.executable, "-m", "phonesync", "--env-file", str(env), "run"]
        self.proc = subprocess.Popen(
            [*command, "--date", DAY.isoformat(), "--summary-json", str(self.summary)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    def wait_for(self, predicate: object, what: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():  # type: ignore[operator]
            assert self.proc.poll() is None, f"the run ended before {what}: {self.stderr}"
            assert time.monotonic() < deadline, f"timed out waiting for {what}"
            time.sleep(0.005)

    def wait_for_log(self, text: str) -> None:
        self.wait_for(lambda: any(text in line for line in self.lines), f"log {text!r}")

    def end(self) -> int:
        try:
            code = self.proc.wait(timeout=120)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=30)
            self._reader.join(timeout=10)
            assert self.proc.stderr is not None
            self.proc.stderr.close()
        return code

    @property
    def stderr(self) -> str:
        return "".join(self.lines)


def _sandbox(tmp_path: Path, data: SandboxData, url: str, **over: object) -> LocalSandbox:
    profile = FhirProfile(write_latency_ms=20, write_latency_p99_ms=30)
    overrides = {"concurrency": 8, "pacing": "fixed", "log_level": "INFO"} | over
    return LocalSandbox(
        data.patients, data.values, tmp_path, profile=profile, database_url=url,
        overrides=overrides,
    )  # fmt: skip


def _assert_one_clear_error(stderr: str, prefix: str = "phonesync: run failed: ") -> None:
    assert "Traceback" not in stderr
    assert PASSWORD not in stderr
    errors = [line for line in stderr.splitlines() if not line.startswith("{")]  # not a log
    assert len(errors) == 1, stderr[-3000:]
    assert errors[0].startswith(f"{prefix}the ledger database cannot be reached")


def test_ledger_gone_for_good_exits_6_with_a_failed_summary_and_no_traceback(
    tmp_path: Path, synth_small: SandboxData, proxy: TcpProxy, empty_postgres_url: str
) -> None:
    """The ledger stays unreachable: exit 6 after PHONESYNC_LEDGER_WAIT_S, one error line, the
    summary says `failed` (with the counts this process knew); the run stays `running` in the
    ledger until the next run takes its stale lock over."""
    url = _through(empty_postgres_url, proxy)
    with _sandbox(tmp_path, synth_small, url, ledger_wait_s=1.0) as sb:
        night = Night(sb, tmp_path)
        night.wait_for(lambda: sb.store.writes >= 100, "100 writes")
        proxy.close()
        code = night.end()
    summary = json.loads(night.summary.read_text())
    with Ledger.open(empty_postgres_url) as ledger:
        run = ledger.get_run(summary["run_id"])
    assert code == 6, night.stderr[-3000:]
    _assert_one_clear_error(night.stderr)
    assert summary["run_id"] != STALE["run_id"]
    assert summary["status"] == "failed"
    assert "ledger database cannot be reached" in summary["error"]
    assert "the next run marks it aborted" in summary["error"]
    assert sum(summary["outcomes"].values()) == summary["rows"]["in_scope"]
    assert run is not None
    assert run.status == "running"  # nothing could be recorded; the next run marks it


def test_ledger_back_within_the_wait_records_every_row_and_the_failed_run(
    tmp_path: Path, synth_small: SandboxData, proxy: TcpProxy, empty_postgres_url: str
) -> None:
    """Unreachable longer than a blip (the run stops), reachable again within
    PHONESYNC_LEDGER_WAIT_S: every row recorded, the run `failed` in the ledger, lock released,
    exit 6, the summary file `failed`."""
    url = _through(empty_postgres_url, proxy)
    with _sandbox(tmp_path, synth_small, url, ledger_wait_s=60.0) as sb:
        night = Night(sb, tmp_path)
        night.wait_for(lambda: sb.store.writes >= 100, "100 writes")
        proxy.close()
        night.wait_for_log("stopping the run")  # the run gave up waiting for the ledger
        proxy.open()
        code = night.end()
    summary = json.loads(night.summary.read_text())
    with Ledger.open(empty_postgres_url) as ledger:
        run = ledger.get_run(summary["run_id"])
        rows = {r.row: r for r in ledger.results(summary["run_id"])}
        lock = ledger.lock_for(DAY)
    assert code == 6, night.stderr[-3000:]
    _assert_one_clear_error(night.stderr)
    assert summary["status"] == "failed"
    assert run is not None
    assert run.status == "failed"
    assert "ledger database cannot be reached" in (run.error or "")
    assert set(rows) == set(synth_small.expected)  # every row in scope has its outcome
    assert sum(summary["outcomes"].values()) == summary["rows"]["in_scope"] == len(rows)
    unfinished = [
        r for r in rows.values() if r.outcome == "failed" and "LedgerUnavailable" in str(r.reason)
    ]
    assert unfinished
    assert lock is None


def test_a_blip_of_the_ledger_during_a_checkpoint_is_waited_out(
    tmp_path: Path, synth_small: SandboxData, proxy: TcpProxy, empty_postgres_url: str
) -> None:
    """The ledger unreachable for ~1 s while the run records a checkpoint: the run waits for
    it and completes normally, every row recorded."""
    url = _through(empty_postgres_url, proxy)
    with _sandbox(tmp_path, synth_small, url, ledger_wait_s=60.0) as sb:
        night = Night(sb, tmp_path)
        night.wait_for(lambda: sb.store.writes >= 300, "300 writes")
        proxy.close()
        night.wait_for_log("the ledger database cannot be reached")  # a checkpoint hit it
        time.sleep(1.0)
        proxy.open()
        code = night.end()
    summary = json.loads(night.summary.read_text())
    assert code in (0, 1), night.stderr[-3000:]
    assert summary["status"] in ("succeeded", "completed_with_failures")
    assert "Traceback" not in night.stderr
    assert sum(summary["outcomes"].values()) == summary["rows"]["in_scope"]
    with Ledger.open(empty_postgres_url) as ledger:
        assert len(ledger.results(summary["run_id"])) == summary["rows"]["in_scope"]


def test_ledger_unreachable_before_the_run_exits_6_and_leaves_no_stale_summary(
    tmp_path: Path, synth_small: SandboxData, proxy: TcpProxy, empty_postgres_url: str
) -> None:
    """Nothing could start (exit 6): last night's summary at --summary-json is removed, so
    a `succeeded` from an earlier run cannot be read as tonight's."""
    url = _through(empty_postgres_url, proxy)
    with _sandbox(tmp_path, synth_small, url) as sb:
        proxy.close()
        night = Night(sb, tmp_path)
        code = night.end()
    assert code == 6, night.stderr[-3000:]
    _assert_one_clear_error(night.stderr, prefix="phonesync: ")
    assert not night.summary.exists()
    assert sb.store.writes == 0
