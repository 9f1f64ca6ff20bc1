"""Scale-out: the plan step's checks on the sheet, kept for the finish (queue_runs.source_warnings).

Revision ID: 0007_queue_source_warnings
Revises: 0006_dashboard_sessions
Create Date: 2026-12-05

A single run checks the sheet itself at its end ("no rows for D …", rows dated after tomorrow:
`sync.source_anomalies`). A scale-out run is finished later, by another process that never saw
the plan, so the plan step computes those warnings and stores their texts with the queued run
(a JSON list of strings: dates, counts and sheet row numbers, never a NIK or phone number).
NULL for a run planned before this revision: its finish has no source checks, as before.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007_queue_source_warnings"
down_revision: str | Sequence[str] | None = "0006_dashboard_sessions"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("queue_runs") as batch:
        batch.add_column(sa.Column("source_warnings", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("queue_runs") as batch:
        batch.drop_column("source_warnings")
