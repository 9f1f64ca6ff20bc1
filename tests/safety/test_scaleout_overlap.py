"""A single run never overlaps a scale-out run whose plan process has exited (the old-number harm).

The tester's night: `plan --workers 1` queued row 2 with its number, the sheet was edited, and
`run --from-source` wrote the new number while the worker still held the old one — the worker then
wrote the old number over it. The run must be refused (exit 5) while the scale-out run is open;
once the worker finished, the re-run applies the edit. Real PostgreSQL, a real `phonesync plan`
process, the loopback sandboxes.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from phonesync.cli import main
from phonesync.crypto import new_key
from phonesync.fhir.session import open_fhir
from phonesync.ledger.store import Ledger
from phonesync.sandbox.local import LocalSandbox
from phonesync.scaleout.worker import run_worker

from .nights import HEADER, D, mobiles, niks_for, outcomes_by_row, patients_for

pytestmark = pytest.mark.postgres

BIRTHS = {"P1": (date(1995, 3, 2), "female"), "P2": (date(1985, 12, 31), "male")}
NIK = niks_for(BIRTHS)


def _patients() -> list[dict[str, Any]]:
    return patients_for(BIRTHS, NIK)


def _sheet() -> list[list[Any]]:
    return [
        list(HEADER),
        [NIK["P1"], "0812-1111-0001", "15/03/2024"],  # r2: queued by plan, then edited
        [NIK["P2"], "0812-2222-0002", "15/03/2024"],  # r3
    ]


def test_run_from_source_cannot_overlap_a_queued_night_and_the_edit_wins(
    tmp_path: Path, empty_postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused (5) while the worker is pending; the worker writes, the re-run applies the edit."""
    overrides = {"snapshot_key": new_key()}
    with LocalSandbox(
        _patients(), _sheet(), tmp_path, database_url=empty_postgres_url, overrides=overrides
    ) as sb:
        env = sb.write_env(tmp_path / "sb.env")
        argv = [sys.executable, "-m", "phonesync", "--env-file", str(env), "plan",
                "--date", D.isoformat(), "--workers", "1"]  # fmt: skip
        planned = subprocess.run(argv, cwd=tmp_path, capture_output=True, timeout=120, check=False)
        assert planned.returncode == 0, planned.stderr.decode()

        sb.book.values[1][1] = "0812-1111-7777"  # r2 edited after the plan step read it
        capsys.readouterr()
        refused = main(["--env-file", str(env), "run", "--date", D.isoformat(), "--from-source"])
        err = capsys.readouterr().err
        assert refused == 5, err
        assert "(scale-out" in err
        assert sb.store.writes == 0
        assert mobiles(sb, "P1") == ["+6281100000001"]

        with Ledger.open(sb.settings.database_url) as ledger:
            worked = asyncio.run(run_worker(sb.settings, ledger, D, "w0", open_fhir, wait_s=0))
        assert worked.summary is not None
        assert worked.summary["status"] == "succeeded"
        assert mobiles(sb, "P1") == ["+6281211110001"]  # what the plan step read

        again = main(["--env-file", str(env), "run", "--date", D.isoformat(), "--from-source"])
        assert again == 0, capsys.readouterr().err
        with Ledger.open(sb.settings.database_url) as ledger:
            latest = ledger.get_run("latest")
        assert latest is not None
        assert outcomes_by_row(sb, latest.run_id) == {2: "updated", 3: "unchanged"}
        assert mobiles(sb, "P1") == ["+6281211117777"]  # the newest number stands
        assert mobiles(sb, "P2") == ["+6281222220002"]
