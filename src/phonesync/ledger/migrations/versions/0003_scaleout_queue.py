"""Scale-out work queue: queue_runs, queue_items (sealed NIK/phone), queue_workers.

Revision ID: 0003_scaleout_queue
Revises: 0002_audit_log
Create Date: 2024-03-20

A frozen snapshot like 0001: the tables are spelled out, not imported from `schema.py`.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003_scaleout_queue"
down_revision: str | Sequence[str] | None = "0002_audit_log"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _ts(name: str, *, nullable: bool = False) -> sa.Column[object]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "queue_runs",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("workers", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("rows_read", sa.Integer(), nullable=False),
        sa.Column("in_scope", sa.Integer(), nullable=False),
        sa.Column("items", sa.Integer(), nullable=False),
        sa.Column("remaining", sa.Integer(), nullable=False),
        sa.Column("sheet_requests", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _ts("created_at"),
        sa.PrimaryKeyConstraint("run_id", name="pk_queue_runs"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_queue_runs_run_id_runs"),
    )
    op.create_index("ix_queue_runs_business_date", "queue_runs", ["business_date"])
    op.create_table(
        "queue_items",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("row", sa.Integer(), nullable=False),
        sa.Column("nik_hash", sa.String(64), nullable=False),
        sa.Column("phone_hash", sa.String(64), nullable=False),
        _ts("moment"),
        sa.Column("fingerprint", sa.String(128), nullable=True),
        sa.Column("sealed", sa.LargeBinary(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("worker", sa.String(255), nullable=True),
        _ts("lease_until", nullable=True),
        sa.Column("claims", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("run_id", "row", name="pk_queue_items"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["queue_runs.run_id"], name="fk_queue_items_run_id_queue_runs"
        ),
        sa.UniqueConstraint("run_id", "nik_hash", name="uq_queue_items_run_id_nik_hash"),
    )
    op.create_index("ix_queue_items_run_id_status", "queue_items", ["run_id", "status"])
    op.create_table(
        "queue_workers",
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("worker", sa.String(255), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("requests_total", sa.Integer(), nullable=False),
        sa.Column("retries", sa.Integer(), nullable=False),
        sa.Column("by_status", sa.JSON(), nullable=False),
        _ts("updated_at"),
        sa.PrimaryKeyConstraint("run_id", "worker", name="pk_queue_workers"),
        sa.ForeignKeyConstraint(
            ["run_id"], ["queue_runs.run_id"], name="fk_queue_workers_run_id_queue_runs"
        ),
    )


def downgrade() -> None:
    op.drop_table("queue_workers")
    op.drop_index("ix_queue_items_run_id_status", table_name="queue_items")
    op.drop_table("queue_items")
    op.drop_index("ix_queue_runs_business_date", table_name="queue_runs")
    op.drop_table("queue_runs")
