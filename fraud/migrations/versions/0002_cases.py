"""Analyst cases and undoable decisions: cases, case_members, case_events, undone_decisions.

Revision ID: 0002
Revises: 0001
"""
import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "undone_decisions",
        sa.Column("decision_id", sa.Integer, primary_key=True),
        sa.Column("analyst", sa.String(128), nullable=False),
        sa.Column("undone_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "cases",
        sa.Column("case_id", sa.String(32), primary_key=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("outcome", sa.String(16), nullable=True),
        sa.Column("assignee", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("linked_to", sa.String(32), nullable=True),
        sa.Column("link_kind", sa.String(16), nullable=True),
        sa.Column("cluster_id", sa.String(32), nullable=True),
    )
    op.create_index("ix_cases_status", "cases", ["status"])
    op.create_index("ix_cases_assignee", "cases", ["assignee"])
    op.create_table(
        "case_members",
        sa.Column("tx_id", sa.String(128), primary_key=True),
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("customer_id", sa.String(128), nullable=False),
        sa.Column("terminal_id", sa.String(128), nullable=False),
        sa.Column("joined_at", sa.DateTime(timezone=True), nullable=False),
    )
    for col in ("case_id", "customer_id", "terminal_id"):
        op.create_index(f"ix_case_members_{col}", "case_members", [col])
    op.create_table(
        "case_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("case_id", sa.String(32), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("analyst", sa.String(128), nullable=False),
        sa.Column("action", sa.String(16), nullable=False),
        sa.Column("text", sa.Text, nullable=False),
        sa.Column("detail", sa.Text, nullable=True),
        sa.Column("undone_by", sa.Integer, nullable=True),
    )
    op.create_index("ix_case_events_case_id", "case_events", ["case_id"])


def downgrade() -> None:
    for name in ("case_events", "case_members", "cases", "undone_decisions"):
        op.drop_table(name)
