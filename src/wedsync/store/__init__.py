"""Persistence: tables, repositories, vault, migrations."""
