"""Catch-up and frozen inputs: an index on row_results.fingerprint, the snapshots table.

Revision ID: 0004_catch_up_snapshots
Revises: 0003_scaleout_queue
Create Date: 2024-03-16

`row_results.fingerprint` is looked up by every catch-up run ("was this exact row content already
settled?"), so it gets an index. `snapshots` keeps the rows each run read, encrypted with Fernet
(`PHONESYNC_SNAPSHOT_KEY`): replays of a past date use them instead of today's sheet.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004_catch_up_snapshots"
down_revision: str | Sequence[str] | None = "0003_scaleout_queue"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_index("ix_row_results_fingerprint", "row_results", ["fingerprint"])
    op.create_table(
        "snapshots",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("run_id", sa.String(64), nullable=False),
        sa.Column("business_date", sa.Date(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_snapshots"),
        sa.ForeignKeyConstraint(["run_id"], ["runs.run_id"], name="fk_snapshots_run_id_runs"),
        sa.UniqueConstraint("run_id", name="uq_snapshots_run_id"),
    )
    op.create_index("ix_snapshots_business_date", "snapshots", ["business_date"])
    op.create_index("ix_snapshots_created_at", "snapshots", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_snapshots_created_at", table_name="snapshots")
    op.drop_index("ix_snapshots_business_date", table_name="snapshots")
    op.drop_table("snapshots")
    op.drop_index("ix_row_results_fingerprint", table_name="row_results")
