"""The desk's store: tickets, corrections, users, settings.

Revision ID: 0001
Revises:
Create Date: 2026-11-01
"""
from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tickets",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(200), nullable=False),
        sa.Column("subject", sa.Text()),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("channel", sa.String(20)),
        sa.Column("product", sa.String(20)),
        sa.Column("attachments", sa.JSON(), nullable=False),
        sa.Column("given_language", sa.String(16)),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("due_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("category", sa.String(32), nullable=False),
        sa.Column("scope", sa.String(16), nullable=False),
        sa.Column("severity", sa.String(16), nullable=False),
        sa.Column("needs_review", sa.Boolean(), nullable=False),
        sa.Column("language", sa.String(16), nullable=False),
        sa.Column("reply", sa.Text(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("model_sha256", sa.String(64)),
        sa.Column("rules_digest", sa.String(64), nullable=False),
        sa.Column("created_by", sa.String(100), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_by", sa.String(100), nullable=False),
        sa.UniqueConstraint("id"),
    )
    op.create_index("ix_tickets_status_due", "tickets", ["status", "due_at"])
    op.create_table(
        "corrections",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("ticket_seq", sa.Integer(), sa.ForeignKey("tickets.seq", ondelete="CASCADE"), nullable=False),
        sa.Column("field", sa.String(32), nullable=False),
        sa.Column("old", sa.JSON()),
        sa.Column("new", sa.JSON()),
        sa.Column("by", sa.String(100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("model_sha256", sa.String(64)),
        sa.Column("rules_digest", sa.String(64), nullable=False),
    )
    op.create_index("ix_corrections_ticket_seq", "corrections", ["ticket_seq"])
    op.create_table(
        "users",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("settings")
    op.drop_table("users")
    op.drop_index("ix_corrections_ticket_seq", table_name="corrections")
    op.drop_table("corrections")
    op.drop_index("ix_tickets_status_due", table_name="tickets")
    op.drop_table("tickets")
