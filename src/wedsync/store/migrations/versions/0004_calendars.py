"""calendars: sources, source events, bookings and holds (with an exclusion constraint on PostgreSQL),
conflicts, the propagation outbox, feed tokens, calendar profiles

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from wedsync.store.tables import UTCDateTime

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def _ts(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, UTCDateTime(timezone=True), nullable=nullable)


def _vendor_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(["vendor_id"], ["vendors.id"], name=f"fk_{table}_vendor_id_vendors",
                                   ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "calendar_profiles",
        sa.Column("vendor_id", sa.String(26), nullable=False),
        sa.Column("working_hours", sa.JSON(), nullable=False),
        sa.Column("buffer_before_min", sa.Integer(), nullable=False),
        sa.Column("buffer_after_min", sa.Integer(), nullable=False),
        sa.Column("travel_buffer_min", sa.Integer(), nullable=False),
        sa.Column("capacity_max_per_day", sa.Integer(), nullable=True),
        sa.Column("capacity_kinds", sa.JSON(), nullable=False),
        sa.Column("stale_after_s", sa.Integer(), nullable=False),
        sa.Column("home_location", sa.String(300), nullable=True),
        _ts("updated_at"),
        _vendor_fk("calendar_profiles"),
        sa.PrimaryKeyConstraint("vendor_id", name="pk_calendar_profiles"),
    )
    op.create_table(
        "calendar_sources",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("vendor_id", sa.String(26), nullable=False),
        sa.Column("connection_id", sa.String(26), nullable=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("calendar_id", sa.String(1000), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("writable", sa.Boolean(), nullable=False),
        sa.Column("receive_blocks", sa.Boolean(), nullable=False),
        sa.Column("rules", sa.JSON(), nullable=False),
        sa.Column("sync_state", sa.Text(), nullable=True),
        sa.Column("poll_interval_s", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("last_synced_at", True),
        _ts("last_attempt_at", True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("watch", sa.JSON(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _ts("created_at"),
        _vendor_fk("calendar_sources"),
        sa.ForeignKeyConstraint(["connection_id"], ["connections.id"],
                                name="fk_calendar_sources_connection_id_connections", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_calendar_sources"),
        sa.UniqueConstraint("vendor_id", "kind", "calendar_id", name="uq_calendar_sources_remote"),
    )
    op.create_index("ix_calendar_sources_vendor_id", "calendar_sources", ["vendor_id"])
    op.create_index("ix_calendar_sources_connection_id", "calendar_sources", ["connection_id"])
    op.create_table(
        "calendar_source_events",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("vendor_id", sa.String(26), nullable=False),
        sa.Column("source_id", sa.String(26), nullable=False),
        sa.Column("remote_id", sa.String(500), nullable=False),
        sa.Column("ical", sa.Text(), nullable=False),
        sa.Column("etag", sa.String(300), nullable=True),
        sa.Column("own_block", sa.Boolean(), nullable=False),
        _ts("first_start", True),
        sa.Column("seen_run", sa.String(26), nullable=True),
        _ts("updated_at"),
        _vendor_fk("calendar_source_events"),
        sa.ForeignKeyConstraint(["source_id"], ["calendar_sources.id"],
                                name="fk_calendar_source_events_source_id_calendar_sources", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_calendar_source_events"),
        sa.UniqueConstraint("source_id", "remote_id", name="uq_calendar_source_events_remote"),
    )
    op.create_index("ix_calendar_source_events_vendor_id", "calendar_source_events", ["vendor_id"])
    op.create_table(
        "calendar_bookings",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("vendor_id", sa.String(26), nullable=False),
        sa.Column("resource", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        _ts("start_at"),
        _ts("end_at"),
        _ts("expires_at", True),
        sa.Column("channel", sa.String(64), nullable=False),
        sa.Column("external_ref", sa.String(500), nullable=True),
        sa.Column("title", sa.String(300), nullable=False),
        sa.Column("meeting_type", sa.String(64), nullable=True),
        sa.Column("category", sa.String(64), nullable=True),
        sa.Column("location", sa.String(300), nullable=True),
        sa.Column("wedding_id", sa.String(64), nullable=True),
        sa.Column("contact_email", sa.String(320), nullable=True),
        sa.Column("invitation_ics", sa.Text(), nullable=True),
        _ts("created_at"),
        _ts("cancelled_at", True),
        _vendor_fk("calendar_bookings"),
        sa.PrimaryKeyConstraint("id", name="pk_calendar_bookings"),
        sa.UniqueConstraint("vendor_id", "channel", "external_ref", name="uq_calendar_bookings_external"),
        sa.CheckConstraint("end_at > start_at", name="ck_calendar_bookings_span"),
    )
    op.create_index("ix_calendar_bookings_vendor_id", "calendar_bookings", ["vendor_id"])
    op.create_index("ix_calendar_bookings_span", "calendar_bookings", ["vendor_id", "resource", "status", "start_at"])
    if op.get_bind().dialect.name == "postgresql":
        # The database-level guarantee: no two active bookings/holds of one vendor resource overlap.
        op.execute("CREATE EXTENSION IF NOT EXISTS btree_gist")
        op.execute(
            "ALTER TABLE calendar_bookings ADD CONSTRAINT ex_calendar_bookings_overlap "
            "EXCLUDE USING gist (vendor_id WITH =, resource WITH =, tstzrange(start_at, end_at, '[)') WITH &&) "
            "WHERE (status = 'active')"
        )
    op.create_table(
        "calendar_conflicts",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("vendor_id", sa.String(26), nullable=False),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("booking_id", sa.String(26), nullable=True),
        sa.Column("channel", sa.String(64), nullable=True),
        sa.Column("external_ref", sa.String(500), nullable=True),
        _ts("start_at"),
        _ts("end_at"),
        sa.Column("detail", sa.JSON(), nullable=False),
        _ts("created_at"),
        _ts("resolved_at", True),
        _vendor_fk("calendar_conflicts"),
        sa.PrimaryKeyConstraint("id", name="pk_calendar_conflicts"),
    )
    op.create_index("ix_calendar_conflicts_vendor_id", "calendar_conflicts", ["vendor_id"])
    op.create_table(
        "calendar_blocks",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("vendor_id", sa.String(26), nullable=False),
        sa.Column("target_source_id", sa.String(26), nullable=False),
        sa.Column("origin_key", sa.String(600), nullable=False),
        sa.Column("block_uid", sa.String(200), nullable=False),
        _ts("start_at"),
        _ts("end_at"),
        sa.Column("all_day", sa.Boolean(), nullable=False),
        sa.Column("summary", sa.String(300), nullable=False),
        sa.Column("desired", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("remote_id", sa.String(500), nullable=True),
        sa.Column("etag", sa.String(300), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.Text(), nullable=True),
        _ts("origin_changed_at"),
        _ts("placed_at", True),
        _ts("updated_at"),
        _vendor_fk("calendar_blocks"),
        sa.ForeignKeyConstraint(["target_source_id"], ["calendar_sources.id"],
                                name="fk_calendar_blocks_target_source_id_calendar_sources", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_calendar_blocks"),
        sa.UniqueConstraint("target_source_id", "origin_key", name="uq_calendar_blocks_origin"),
        sa.UniqueConstraint("block_uid", name="uq_calendar_blocks_block_uid"),
    )
    op.create_index("ix_calendar_blocks_state", "calendar_blocks", ["vendor_id", "state"])
    op.create_table(
        "calendar_feed_tokens",
        sa.Column("id", sa.String(26), nullable=False),
        sa.Column("vendor_id", sa.String(26), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        _ts("created_at"),
        _ts("revoked_at", True),
        _vendor_fk("calendar_feed_tokens"),
        sa.PrimaryKeyConstraint("id", name="pk_calendar_feed_tokens"),
        sa.UniqueConstraint("token_hash", name="uq_calendar_feed_tokens_token_hash"),
    )
    op.create_index("ix_calendar_feed_tokens_vendor_id", "calendar_feed_tokens", ["vendor_id"])


def downgrade() -> None:
    for table in ("calendar_feed_tokens", "calendar_blocks", "calendar_conflicts", "calendar_bookings",
                  "calendar_source_events", "calendar_sources", "calendar_profiles"):
        op.drop_table(table)
