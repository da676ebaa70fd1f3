"""``wedsync payments``: balances, the ledger check, an on-demand reconciliation, the recovery sweep."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

import typer
from rich.table import Table

from wedsync.errors import WedsyncError
from wedsync.terminal import fail, known_vendor, make_console

NAME = "payments"
app = typer.Typer(help="Payments: balances, ledger check, reconciliation, recovery sweep.", no_args_is_help=True)
out = make_console()


def _hub(vendor_id: str | None = None) -> Any:
    """The hub; with ``vendor_id``, a clear error first when that vendor does not exist."""
    from wedsync.bootstrap import get_hub

    hub = get_hub()
    if vendor_id is not None:
        known_vendor(hub, vendor_id)
    return hub


def _when(value: str | None, default: datetime) -> datetime:
    if value is None:
        return default
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        fail(f"not an ISO 8601 datetime: {value!r}")
    if parsed.tzinfo is None:
        fail(f"{value!r} needs a UTC offset (e.g. 2026-12-01T00:00:00+00:00)")
    return parsed


@app.command("balances")
def balances(vendor: Annotated[str, typer.Option(help="vendor id")],
             as_json: Annotated[bool, typer.Option("--json", help="print JSON")] = False) -> None:
    """Balances from the ledger (owed to each party) and the check that every currency nets to zero."""
    hub = _hub(vendor)
    bal = hub.payments.balances(vendor)
    check = hub.payments.ledger_check(vendor)
    if as_json:
        out.print_json(json.dumps({**bal, "check": check}))
        return
    t = Table(title=f"Ledger balances of vendor {vendor} (minor units; owed to the party when positive)")
    for col in ("account", "currency", "balance"):
        t.add_column(col, justify="right" if col == "balance" else "left")
    for cur, parts in bal["vendor"].items():
        for name, v in parts.items():
            t.add_row(f"vendor {name}", cur, str(v))
    for cur, parts in bal["platform"].items():
        for name, v in parts.items():
            t.add_row(f"platform {name}", cur, str(v))
    for aff, per in bal["affiliates"].items():
        for cur, v in per.items():
            t.add_row(f"affiliate {aff}", cur, str(v))
    out.print(t)
    out.print(f"ledger balanced: {check['balanced']} ({check['transactions']} transactions; "
              f"net {check['netByCurrency']})")
    if not check["balanced"]:
        raise typer.Exit(1)


@app.command("reconcile")
def reconcile(vendor: Annotated[str, typer.Option(help="vendor id")],
              since: Annotated[str | None, typer.Option(help="ISO datetime with offset (default: 24 h ago)")] = None,
              until: Annotated[str | None, typer.Option(help="ISO datetime with offset (default: now)")] = None,
              as_json: Annotated[bool, typer.Option("--json", help="print the whole report as JSON")] = False,
              ) -> None:
    """Compare the ledger with the vendor's gateways' settlements over [since, until) and store the report."""
    from wedsync.services.reconciliation import Reconciler

    now = datetime.now(UTC)
    start, end = _when(since, now - timedelta(days=1)), _when(until, now)
    hub = _hub(vendor)

    async def run() -> dict[str, Any]:
        try:
            return await Reconciler(hub).reconcile(vendor, start, end)
        finally:
            await hub.connections.aclose()

    try:
        report = asyncio.run(run())
    except WedsyncError as exc:
        fail(f"{exc.message} ({exc.code})")
    if as_json:
        out.print_json(json.dumps(report))
        return
    s = report["summary"]
    t = Table(title=f"Reconciliation {report['id']} ({start.isoformat()} .. {end.isoformat()})")
    for col in ("gateway", "matched", "mismatched", "missing at gateway", "missing in ledger", "other items"):
        t.add_column(col)
    for g in s["gateways"]:
        t.add_row(g["gateway"], str(g["matched"]), str(g["mismatched"]), str(g["missingInGateway"]),
                  str(g["missingInLedger"]), ", ".join(f"{k} {v}" for k, v in g["otherItems"].items()) or "-")
    out.print(t)
    out.print(f"ledger balanced: {s['ledger']['balanced']}")
    if s["mismatched"] or s["missingInGateway"] or s["missingInLedger"]:
        raise typer.Exit(1)


@app.command("sweep")
def sweep() -> None:
    """Run the recovery sweep once: resolve parked payments, replay pending refunds and transfers, release
    escrow whose condition is met (the workers do this every 20 s on their own)."""
    hub = _hub()

    async def run() -> dict[str, int]:
        try:
            result: dict[str, int] = await hub.payments.sweep()
            return result
        finally:
            await hub.connections.aclose()

    out.print_json(json.dumps(asyncio.run(run())))
