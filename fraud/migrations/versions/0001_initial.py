"""Initial alert store: alerts, decisions, review_server_secret, review_sessions (as create_all made them).

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
        "alerts",
        sa.Column("tx_id", sa.String(128), primary_key=True),
        sa.Column("timestamp", sa.DateTime(timezone=True), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("terminal_id", sa.String(128), nullable=False),
        sa.Column("amount", sa.Float, nullable=False),
        sa.Column("score", sa.Float, nullable=False),
        sa.Column("reasons", sa.Text, nullable=False),
        sa.Column("model_version", sa.String(64), nullable=True),
        sa.Column("scenario", sa.Integer, nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    for col in ("timestamp", "customer_id", "terminal_id"):
        op.create_index(f"ix_alerts_{col}", "alerts", [col])
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("tx_id", sa.String(128), nullable=True),
        sa.Column("cluster_id", sa.String(128), nullable=True),
        sa.Column("decision", sa.String(16), nullable=False),
        sa.Column("analyst", sa.String(128), nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("decided_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_decisions_tx_id", "decisions", ["tx_id"])
    op.create_index("ix_decisions_cluster_id", "decisions", ["cluster_id"])
    op.create_table(
        "review_server_secret",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("secret", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "review_sessions",
        sa.Column("id_mac", sa.String(64), primary_key=True),
        sa.Column("analyst", sa.String(128), nullable=False),
        sa.Column("credential", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_review_sessions_analyst", "review_sessions", ["analyst"])
    op.create_index("ix_review_sessions_expires_at", "review_sessions", ["expires_at"])


def downgrade() -> None:
    op.drop_table("review_sessions")
    op.drop_table("review_server_secret")
    op.drop_table("decisions")
    op.drop_table("alerts")
