"""Keyset pages of clients: (vendor_id, id) on crm_clients and (connection_id, id) on clients, so a page of
``WHERE vendor_id = ? AND id > ? ORDER BY id LIMIT n`` reads its n rows. With only the vendor_id (or
connection_id) index, each page read and sorted all of the vendor's rows, so exporting a large vendor (and
listing its clients to the end) was quadratic.

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-03
"""

from __future__ import annotations

from alembic import op

revision = "0015"
down_revision = "0014"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_crm_clients_vendor_id_id", "crm_clients", ["vendor_id", "id"])
    op.create_index("ix_clients_connection_id_id", "clients", ["connection_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_clients_connection_id_id", table_name="clients")
    op.drop_index("ix_crm_clients_vendor_id_id", table_name="crm_clients")
