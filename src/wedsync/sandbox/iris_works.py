"""Iris Works emulator (no public API): its contacts CSV export and import, and its Zap triggers."""

from __future__ import annotations

from typing import Any

from wedsync.sandbox.crm_csv_products import PRODUCTS, ZapierProductEmulator

__all__ = ["PREFIX", "SLUG", "create_emulator"]

SLUG = "iris-works"
PREFIX = "/iris-works"


def create_emulator(*, seed: int = 42, contacts: int = 40, overlap_with_vsco: int = 0, vsco_contacts: int = 200,
                    vsco_jobs: int = 80, **_: Any) -> ZapierProductEmulator:
    """Registry entry point (see ``wedsync.sandbox.registry``)."""
    return ZapierProductEmulator(PRODUCTS[SLUG], seed=seed, contacts=contacts, overlap_with_vsco=overlap_with_vsco,
                                 vsco_contacts=vsco_contacts, vsco_jobs=vsco_jobs)
