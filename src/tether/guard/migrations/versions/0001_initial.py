"""The first schema: interactions (with review fields) and API keys.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "interactions",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("key_id", sa.String(36)),
        sa.Column("endpoint", sa.String(32), nullable=False),
        sa.Column("model", sa.String(200)),
        sa.Column("request", sa.Text, nullable=False),
        sa.Column("response", sa.Text),
        sa.Column("outcome", sa.String(32), nullable=False),
        sa.Column("flagged", sa.Boolean, nullable=False),
        sa.Column("refused", sa.Boolean),
        sa.Column("verdicts", sa.Text, nullable=False),
        sa.Column("latency_ms", sa.Float, nullable=False),
        sa.Column("guard_ms", sa.Float, nullable=False),
        sa.Column("upstream_ms", sa.Float),
        sa.Column("review_label", sa.String(32)),
        sa.Column("review_response", sa.Text),
        sa.Column("review_note", sa.Text),
        sa.Column("reviewed_by", sa.String(36)),
        sa.Column("reviewed_at", sa.Float),
    )
    for column in ("created_at", "key_id", "outcome", "flagged", "review_label"):
        op.create_index(f"ix_interactions_{column}", "interactions", [column])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("admin", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float),
    )


def downgrade() -> None:
    op.drop_table("api_keys")
    op.drop_table("interactions")
