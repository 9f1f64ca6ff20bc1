"""The sandbox under test in its own process: `python -m phonesync sandbox … --write-env FILE`.

Started fresh (same files, same seed) for every contender, so each one meets the same server in
the same state; stopped with SIGTERM. Its CPU time comes from /proc, its view of the night from
the read-only `/_sandbox/requests` and `/_sandbox/stats` endpoints (outside the gateway: no
latency, no limit, no auth, and not counted as FHIR requests).
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import aiohttp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a live process (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Sandbox:
    def __init__(self, state_dir: Path, data_dir: Path, business_date: str, args: list[str]):
        self.state_dir, self.data_dir = state_dir, data_dir
        self.business_date, self.args = business_date, args
        self.env_file = state_dir / "sandbox.env"
        self.fhir_port, self.sheets_port = free_port(), free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.fhir_port}"

    def start(self, timeout_s: float = 180.0) -> Sandbox:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.env_file.unlink(missing_ok=True)
        cmd = [
            sys.executable, "-m", "phonesync", "sandbox",
            "--patients-file", str(self.data_dir / "patients.ndjson"),
            "--sheet-file", str(self.data_dir / "sheet.json"),
            "--date", self.business_date,
            "--fhir-port", str(self.fhir_port),
            "--sheets-port", str(self.sheets_port),
            "--state-dir", str(self.state_dir),
            "--write-env", str(self.env_file),
            *self.args,
        ]  # fmt: skip
        log = (self.state_dir / "sandbox.log").open("ab")
        self.proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603
        deadline = time.monotonic() + timeout_s
        while not self.env_file.exists():
            if self.proc.poll() is not None:
                tail = (self.state_dir / "sandbox.log").read_text()[-2000:]
                raise RuntimeError(f"the sandbox exited ({self.proc.returncode}):\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError("the sandbox did not start in time")
            time.sleep(0.1)
        return self

    def cpu_s(self) -> float:
        assert self.proc is not None
        return cpu_seconds(self.proc.pid)

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.root + path, timeout=120) as reply:  # noqa: S310
            return json.loads(reply.read())

    def summary(self) -> dict[str, Any]:
        return dict(self.get("/_sandbox/requests"))

    def writes(self) -> int:
        return int(self.get("/_sandbox/stats")["writes"])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def export(self, pids: list[str], api_key: tuple[str, str]) -> dict[str, dict[str, Any]]:
        """Current versions of these patients, by plain FHIR reads (use on a no-latency sandbox)."""
        return asyncio.run(_read_all(f"{self.root}/fhir-r4/v1", pids, api_key))


async def _read_all(base: str, pids: list[str], api_key: tuple[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    sem = asyncio.Semaphore(32)
    async with aiohttp.ClientSession(headers=dict([api_key])) as session:

        async def one(pid: str) -> None:
            async with sem, session.get(f"{base}/Patient/{pid}") as reply:
                reply.raise_for_status()
                out[pid] = await reply.json(content_type=None)

        await asyncio.gather(*(one(pid) for pid in pids))
    return out
