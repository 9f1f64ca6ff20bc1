"""Service state: a small key/value table for `phonesync serve` (e.g. the schedule paused).

Revision ID: 0005_service_state
Revises: 0004_catch_up_snapshots
Create Date: 2024-03-17

Kept in the ledger so that every replica and every restart sees the same state: an operator who
paused the nightly schedule does not get it back running after a deploy.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005_service_state"
down_revision: str | Sequence[str] | None = "0004_catch_up_snapshots"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "service_state",
        sa.Column("key", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(255), nullable=True),
        sa.PrimaryKeyConstraint("key", name="pk_service_state"),
    )


def downgrade() -> None:
    op.drop_table("service_state")
