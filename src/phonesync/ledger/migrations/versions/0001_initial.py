"""Initial ledger: runs, row_results, applied, run_locks, patient_ids.

Revision ID: 0001
Revises:
Create Date: 2024-03-15

A frozen snapshot: it spells the tables out instead of importing `schema.py`, so that later
changes to the metadata need (and get) their own revision.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("trigger", sa.String(16), nullable=False),
        sa.Column("parent_run_id", sa.String(64), nullable=True),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("dry_run", sa.Boolean(), nullable=False),
        _ts("started_at"),
        _ts("finished_at", nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("host", sa.String(255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", name="pk_runs"),
        sa.ForeignKeyConstraint(
            ["parent_run_id"], ["runs.run_id"], name="fk_runs_parent_run_id_runs"
        ),
    )
    op.create_index("ix_runs_business_date", "runs", ["business_date"])
    op.create_index("ix_runs_started_at", "runs", ["started_at"])
    op.create_table(
        "row_results",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("nik_hash", sa.String(64), nullable=True),
        sa.Column("nik_masked", sa.String(32), nullable=True),
        sa.Column("phone_masked", sa.String(32), nullable=True),
        sa.Column("phone_hash", sa.String(64), nullable=True),
        _ts("moment", nullable=True),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("patient_id", sa.String(128), nullable=True),
        sa.Column("version_before", sa.String(64), nullable=True),
        sa.Column("version_after", sa.String(64), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("fingerprint", sa.String(128), nullable=True),
        _ts("recorded_at"),
        sa.PrimaryKeyConstraint("id", name="pk_row_results"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_row_results_run_id_runs"),
        sa.UniqueConstraint("run_id", "row", name="uq_row_results_run_id_row"),
    )
    op.create_index("ix_row_results_nik_hash", "row_results", ["nik_hash"])
    op.create_table(
        "applied",
        sa.Column("nik_hash", sa.String(64), nullable=False),
        sa.Column("phone_hash", sa.String(64), nullable=False),
        _ts("moment"),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("patient_id", sa.String(128), nullable=True),
        _ts("applied_at"),
        sa.PrimaryKeyConstraint("nik_hash", name="pk_applied"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_applied_run_id_runs"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "run_locks",
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(255), nullable=False),
        _ts("acquired_at"),
        _ts("heartbeat_at"),
        sa.PrimaryKeyConstraint("business_date", name="pk_run_locks"),
    )
    op.create_table(
        "patient_ids",
        sa.Column("nik_hash", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(128), nullable=False),
        _ts("seen_at"),
        sa.PrimaryKeyConstraint("nik_hash", name="pk_patient_ids"),
    )


def downgrade() -> None:
    op.drop_table("patient_ids")
    op.drop_table("run_locks")
    op.drop_table("applied")
    op.drop_index("ix_row_results_nik_hash", table_name="row_results")
    op.drop_table("row_results")
    op.drop_index("ix_runs_started_at", table_name="runs")
    op.drop_index("ix_runs_business_date", table_name="runs")
    op.drop_table("runs")
