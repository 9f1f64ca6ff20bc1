"""Run a contender as a child process and measure it: wall time, CPU time, peak RSS.

CPU comes from `os.wait4` (the child's own rusage), so the harness's polling does not count.
Peak memory is the child's `VmHWM` from /proc, read while it runs: `ru_maxrss` is useless here,
because Linux carries the parent's high-water mark across fork + exec (it would report the
harness's own RSS for any smaller child). `kill_when` lets E9 send SIGKILL once the sandbox
has seen half the expected writes; the same command is then started again at once (phonesync's
is retried while it answers exit code 5, "another run for this date is in progress", until the
dead run's lock is stale).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent
EXIT_RUN_IN_PROGRESS = 5


@dataclass
class Measured:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_rss_mb: float = 0.0
    exit_codes: list[int] = field(default_factory=list)
    killed_at_s: float | None = None
    timed_out: bool = False


def phonesync_cmd(
    env_file: Path, business_date: str, summary: Path, *, from_source: bool = False
) -> list[str]:
    """`phonesync run`; `from_source` re-reads the sheet of a date whose input was stored (E11:
    the same date again with a changed sheet — a past date is otherwise replayed as it was read)."""
    return [
        sys.executable, "-m", "phonesync", "--env-file", str(env_file),
        "run", "--date", business_date, "--summary-json", str(summary),
        *(["--from-source"] if from_source else []),
    ]  # fmt: skip


def baseline_cmd(
    name: str, env_file: Path, work: Path, out: Path, limit: int | None, concurrency: int
) -> list[str]:
    cmd = [sys.executable, str(BENCH / "baselines" / f"{name}.py")]
    cmd += ["--env-file", str(env_file), "--work", str(work), "--out", str(out)]
    if limit:
        cmd += ["--limit", str(limit)]
    if name == "fixed_async":
        cmd += ["--concurrency", str(concurrency)]
    return cmd


def run(
    cmd: list[str],
    log: Path,
    env: dict[str, str],
    *,
    timeout_s: float,
    kill_when: Callable[[], bool] | None = None,
    restart_while_busy: bool = False,
) -> Measured:
    measured = Measured()
    started = time.monotonic()
    deadline = started + timeout_s
    killed = False
    with log.open("ab") as out:
        while True:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)  # noqa: S603
            try:
                status, usage, hwm_mb = _wait(proc, deadline, None if killed else kill_when)
            except BaseException:
                proc.kill()  # the harness is being stopped: leave no contender behind
                proc.wait()
                raise
            measured.cpu_s += usage.ru_utime + usage.ru_stime
            measured.peak_rss_mb = max(measured.peak_rss_mb, hwm_mb)
            code = os.waitstatus_to_exitcode(status) if status is not None else -999
            measured.exit_codes.append(code)
            if status is None:
                measured.timed_out = True
                break
            if code == -signal.SIGKILL and not killed and kill_when is not None:
                killed = True
                measured.killed_at_s = time.monotonic() - started
                continue
            if restart_while_busy and killed and code == EXIT_RUN_IN_PROGRESS:
                time.sleep(2.0)
                continue
            break
    measured.wall_s = time.monotonic() - started
    return measured


def vm_hwm_mb(pid: int) -> float:
    """Peak resident set size of a live process so far (Linux /proc), MiB; 0 once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _wait(
    proc: subprocess.Popen[bytes], deadline: float, kill_when: Callable[[], bool] | None
) -> tuple[int | None, os.struct_rusage | object, float]:
    """(wait status, rusage, peak RSS MiB); status None when the deadline passed (killed)."""
    next_check = 0.0
    hwm = 0.0
    while True:
        hwm = max(hwm, vm_hwm_mb(proc.pid))  # monotonic: the last read before exit is the peak
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            return status, usage, hwm
        now = time.monotonic()
        if now > deadline:
            proc.kill()
            _, _, usage = os.wait4(proc.pid, 0)
            proc.returncode = -9
            return None, usage, hwm
        if kill_when is not None and now >= next_check:
            next_check = now + 0.25
            if kill_when():
                proc.send_signal(signal.SIGKILL)
                kill_when = None
        time.sleep(0.02)
