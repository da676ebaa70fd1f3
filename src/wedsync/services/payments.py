"""Payments core: vendor setup, marketplace transactions (routing, attempts, failover, unknown outcomes),
the ledger, escrow, refunds, transfers, disputes and the gateway webhook handlers.

How a transaction stays safe (ARCHITECTURE rules 3-4):

1. The intent (amount, split, route) is committed before any gateway call; its id is the workflow id.
2. Each attempt's row, with its deterministic idempotency key ``<intent id>-<attempt no>``, is committed
   before the call; a replayed step (crash, DBOS recovery) finds the row and first *looks the charge up*
   at the same gateway, then replays the same key there: the gateway deduplicates.
3. The outcome, the intent's state, the escrow hold and the ledger postings are written in one database
   transaction; ledger references are unique, so a replay never posts twice.
4. Fail over only on NOT_EXECUTED. DECLINED stops (the card's answer), unless the matching routing rule
   says ``failoverOnDecline``. UNKNOWN pins the intent to that gateway: lookups with backoff, then the
   intent is parked as ``unknown`` and the sweep resolves it later; it is never charged elsewhere meanwhile.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Connection as SAConnection
from sqlalchemy import Table, bindparam, func, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from wedsync.connectors.errors import CircuitOpen, ConnectorError, Fatal, OutcomeUnknown, ReauthRequired, Retriable
from wedsync.connectors.payments.base import (
    ChargeRequest,
    DisputeEvidence,
    DisputeInfo,
    EventKind,
    GatewayConnector,
    GatewayEvent,
    GatewayResult,
    Outcome,
    SplitInstruction,
    bounded_key,
)
from wedsync.domain import ledger as L
from wedsync.domain.escrow import EscrowTerms
from wedsync.domain.money import normalize_currency, require_positive
from wedsync.domain.routing import METHODS, InvalidGatewayConfig, NoGatewayAvailable, parse_config, route
from wedsync.domain.splits import FeeStructure, Split, compute_split, explicit_split, share_of
from wedsync.errors import Conflict, InvalidInput, NotFound, NotImplementedCapability
from wedsync.logging import get_logger
from wedsync.services.webhook_inbox import InboxRow
from wedsync.store.paging import cursor_row
from wedsync.store.tables import Connection, new_id, utcnow
from wedsync.store.tables_payments import (
    EscrowHold,
    LedgerEntry,
    LedgerTransaction,
    MilestoneApproval,
    PaymentAttempt,
    PaymentDispute,
    PaymentGatewayAccount,
    PaymentIntent,
    PaymentRefund,
    PaymentSetup,
    PaymentTransfer,
)

log = get_logger("wedsync.payments")
_A: Table = PaymentAttempt.__table__  # type: ignore[assignment]
_I: Table = PaymentIntent.__table__  # type: ignore[assignment]

_I_COLS = tuple(_I.c.keys())
# The hot path's statements, built once (SQLAlchemy caches their compiled form).
_Q_BY_KEY = select(_I).where(_I.c.vendor_id == bindparam("v"), _I.c.client_key == bindparam("k"))
_Q_SETUP = select(PaymentSetup.__table__.c.config).where(PaymentSetup.__table__.c.vendor_id == bindparam("v"))
_Q_CONNS = select(Connection.__table__.c.id, Connection.__table__.c.provider, Connection.__table__.c.status).where(
    Connection.__table__.c.vendor_id == bindparam("v"), Connection.__table__.c.id.in_(bindparam("ids", expanding=True)))
_Q_DISABLED = select(PaymentGatewayAccount.__table__.c.connection_id).where(
    PaymentGatewayAccount.__table__.c.vendor_id == bindparam("v"),
    PaymentGatewayAccount.__table__.c.status == "disabled")
_Q_ATT = select(_A).where(_A.c.intent_id == bindparam("i"), _A.c.attempt_no == bindparam("n"))
_Q_ATT_LOCK = _Q_ATT.with_for_update()
_Q_INT = select(_I).where(_I.c.id == bindparam("i"))
_Q_INT_LOCK = _Q_INT.with_for_update()
_U_ATT = update(_A).where(_A.c.id == bindparam("_id"))
_U_INT = update(_I).where(_I.c.id == bindparam("_id"))
_Q_POSTED = select(LedgerTransaction.__table__.c.reference).where(
    LedgerTransaction.__table__.c.reference.in_(bindparam("refs", expanding=True)))
MILESTONES = ("deposit", "installment", "final", "full")
FINAL = ("succeeded", "declined", "failed")
OPEN = ("created", "processing", "unknown")
#: Every status a transaction has: what ``GET /api/payments/transactions?status=`` filters by.
INTENT_STATUSES = OPEN + FINAL
# Backoff before each lookup of an unknown outcome (seconds); after the last one the intent is parked.
LOOKUP_DELAYS: tuple[float, ...] = (0.2, 0.5, 1.0, 2.0)
# When every gateway answered "not executed, try later": wait, then walk the route again.
ROUND_DELAYS: tuple[float, ...] = (1.0, 3.0)
CTX_TTL = 10.0
COMPLIANCE_KEYS = ("pciScope", "kycRequired", "threeDSecure", "taxReporting", "dataResidency")


def _key(intent_id: str, attempt_no: int) -> str:
    return f"{intent_id}-{attempt_no}"


def _result_dict(r: GatewayResult, gateway_ms: float = 0.0, settle: bool = False) -> dict[str, Any]:
    return {"outcome": r.outcome.value, "gateway_ref": r.gateway_ref, "decline_code": r.decline_code,
            "message": r.message, "native_split": r.native_split, "fee_minor": r.fee_minor,
            "retryable": r.retryable, "amount_minor": r.amount_minor, "extra": dict(r.extra),
            "gateway_ms": gateway_ms, "settle": settle}


@dataclass(frozen=True)
class IntentRequest:
    """A transaction as the API accepted it (already typed; validated by ``create_intent``)."""

    booking_ref: str
    amount_minor: int
    currency: str
    payment_method: str
    milestone: str = "full"
    sequence: int = 1
    method_type: str = "card"
    description: str | None = None
    customer_email: str | None = None
    affiliate_id: str | None = None
    split: dict[str, Any] | None = None
    escrow: dict[str, Any] | None = None

    def fingerprint(self) -> str:
        body = json.dumps(asdict(self), sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.sha256(body.encode()).hexdigest()


class Steps(Protocol):
    """The durable steps of one transaction (DBOS steps in production, plain calls without DBOS)."""

    async def begin(self, intent_id: str) -> dict[str, Any]: ...
    async def attempt(self, intent_id: str, attempt_no: int, connection_id: str) -> dict[str, Any]: ...
    async def resolve(self, intent_id: str, attempt_no: int) -> dict[str, Any]: ...
    async def settle(self, intent_id: str) -> dict[str, Any]: ...
    async def finish(self, intent_id: str, status: str, code: str | None, message: str | None) -> dict[str, Any]: ...
    async def sleep(self, seconds: float) -> None: ...


async def drive_payment(intent_id: str, steps: Steps, plan: dict[str, Any] | None = None) -> dict[str, Any]:
    """processMarketplaceTransaction: walk the route, one step per gateway call (see module docstring).
    ``plan`` is the committed intent's route (``plan_of``); without it a ``begin`` step reads it."""
    snap = plan if plan is not None else await steps.begin(intent_id)
    if snap["status"] in FINAL:
        return snap
    route_ids: list[str] = list(snap["route"])
    attempt_no = int(snap["attempts"])
    if snap.get("pinned_attempt"):  # an earlier run left an unresolved attempt: resolve it, never elsewhere
        outcome = await _resolve_loop(intent_id, int(snap["pinned_attempt"]), steps)
        if outcome is not None:
            return outcome
    last_code, last_message = "gateways_unavailable", "no gateway could take the payment"
    for round_no in range(len(ROUND_DELAYS) + 1):
        any_retryable = False
        for index, connection_id in enumerate(route_ids):
            attempt_no += 1
            r = await steps.attempt(intent_id, attempt_no, connection_id)
            outcome = r["outcome"]
            if outcome == Outcome.SUCCEEDED:
                return await _settled(intent_id, r, steps)
            if outcome == Outcome.DECLINED:
                if snap["failover_on_decline"] and index < len(route_ids) - 1:
                    continue
                return await steps.finish(intent_id, "declined", r.get("decline_code") or "card_declined",
                                          r.get("message"))
            if outcome == Outcome.UNKNOWN:
                resolved = await _resolve_loop(intent_id, attempt_no, steps)
                if resolved is not None:
                    return resolved
                continue  # provably not executed after all: the next gateway may take it
            any_retryable = any_retryable or bool(r.get("retryable"))
            last_code = "gateway_not_executed"
            last_message = r.get("message") or last_message
        if not any_retryable or round_no >= len(ROUND_DELAYS):
            break
        await steps.sleep(ROUND_DELAYS[round_no])
    return await steps.finish(intent_id, "failed", last_code, last_message)


async def _resolve_loop(intent_id: str, attempt_no: int, steps: Steps) -> dict[str, Any] | None:
    """Resolve an UNKNOWN attempt at its own gateway; None when it proved not executed."""
    for delay in LOOKUP_DELAYS:
        await steps.sleep(delay)
        r = await steps.resolve(intent_id, attempt_no)
        if r["outcome"] == Outcome.SUCCEEDED:
            return await _settled(intent_id, r, steps)
        if r["outcome"] == Outcome.DECLINED:
            return await steps.finish(intent_id, "declined", r.get("decline_code") or "card_declined",
                                      r.get("message"))
        if r["outcome"] == Outcome.NOT_EXECUTED:
            return None
    return await steps.finish(intent_id, "unknown", "outcome_unknown",
                              "the gateway did not confirm the charge yet; it is resolved by lookup later")


async def _settled(intent_id: str, r: Mapping[str, Any], steps: Steps) -> dict[str, Any]:
    """A success needs a settle step only when the vendor's part is to be transferred separately."""
    if r.get("settle"):
        return await steps.settle(intent_id)
    return {"id": intent_id, "status": "succeeded"}


class DirectSteps:
    """The steps run in-process without DBOS (tests and tools; no crash durability)."""

    def __init__(self, service: PaymentService) -> None:
        self.s = service

    async def begin(self, intent_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.s.begin, intent_id)

    async def attempt(self, intent_id: str, attempt_no: int, connection_id: str) -> dict[str, Any]:
        return await self.s.attempt(intent_id, attempt_no, connection_id)

    async def resolve(self, intent_id: str, attempt_no: int) -> dict[str, Any]:
        return await self.s.resolve(intent_id, attempt_no)

    async def settle(self, intent_id: str) -> dict[str, Any]:
        return await self.s.settle(intent_id)

    async def finish(self, intent_id: str, status: str, code: str | None, message: str | None) -> dict[str, Any]:
        return await asyncio.to_thread(self.s.finish, intent_id, status, code, message)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


# --------------------------------------------------------------------------------------------- ledger


def post_txn(s: Session | SAConnection, vendor_id: str, txn: L.LedgerTxn, intent_id: str | None = None) -> bool:
    """Write one balanced transaction: entries first, then the header (whose trigger checks the balance).
    Returns False when the reference was already posted (a replay)."""
    return bool(post_txns(s, vendor_id, [txn], intent_id))


def post_txns(s: Session | SAConnection, vendor_id: str, txns: list[L.LedgerTxn], intent_id: str | None = None
              ) -> int:
    """Write several balanced transactions at once (one existence check, one insert of all entries, then
    the headers); references already posted are skipped. Returns how many were written."""
    refs = [t.reference for t in txns]
    done = set(s.execute(_Q_POSTED, {"refs": refs}).scalars())
    todo = [(new_id(), t) for t in txns if t.reference not in done]
    if not todo:
        return 0
    s.execute(insert(LedgerEntry), [
        {"txn_id": tid, "vendor_id": vendor_id, "account": p.account, "currency": p.currency, "amount": p.amount}
        for tid, t in todo for p in t.postings])
    now = utcnow()
    s.execute(insert(LedgerTransaction), [
        {"id": tid, "vendor_id": vendor_id, "reference": t.reference, "kind": t.kind, "intent_id": intent_id,
         "entry_count": len(t.postings), "created_at": now} for tid, t in todo])
    return len(todo)


def _parties(intent: PaymentIntent) -> L.Parties:
    assert intent.connection_id is not None
    return L.Parties(vendor_id=intent.vendor_id, connection_id=intent.connection_id, affiliate_id=intent.affiliate_id)


def _remaining(intent: PaymentIntent) -> Split:
    """What is left of the payment's parts after refunds (and reserved refunds)."""
    done = Split.from_dict(intent.refunded_split) if intent.refunded_split else Split(0, 0, 0)
    return Split.from_dict(intent.split).minus(done)


# -------------------------------------------------------------------------------------------- service


@dataclass(frozen=True)
class _Row:
    """An attempt row as committed (the fields a step reads)."""

    id: str
    vendor_id: str
    intent_id: str
    attempt_no: int
    connection_id: str
    provider: str
    idempotency_key: str
    status: str
    lookups: int
    gateway_ms: float
    gateway_ref: str | None
    decline_code: str | None
    message: str | None


@dataclass
class _Ctx:
    """A gateway connection and its connector, for one call."""

    conn: Connection
    connector: GatewayConnector
    destination: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


class PaymentService:
    """``hub.payments``."""

    def __init__(self, hub: Any) -> None:
        self.hub = hub
        self.db = hub.db
        self._ctxs: dict[tuple[str, int], tuple[_Ctx, float]] = {}
        # First attempts committed with their intent by this process and not handed to a step yet.
        self._preopened: dict[tuple[str, int], tuple[Any, PaymentIntent]] = {}

    async def aclose(self) -> None:
        self._ctxs.clear()

    # -- connectors ---------------------------------------------------------------------------------
    async def _ctx(self, connection_id: str) -> _Ctx:
        """The gateway connection and its live connector; looked up once per event loop and connection
        every ``CTX_TTL`` seconds (changed credentials or onboarding are picked up after that)."""
        key = (connection_id, id(asyncio.get_running_loop()))
        now = time.monotonic()
        cached = self._ctxs.get(key)
        if cached is not None and cached[1] > now:
            return cached[0]
        ctx = await self._load_ctx(connection_id)
        if len(self._ctxs) > 1024:
            self._ctxs.clear()
        self._ctxs[key] = (ctx, now + CTX_TTL)
        return ctx

    async def _load_ctx(self, connection_id: str) -> _Ctx:
        conn = self.hub.connections.get_any(connection_id)
        connector = await self.hub.connections.connector(conn)
        if not isinstance(connector, GatewayConnector):
            raise InvalidInput(f"{conn.provider} is not a payment gateway", code="not_a_gateway")
        with self.db.read() as s:
            acct = s.get(PaymentGatewayAccount, connection_id)
        # The split destination: configured on the connection, or the account onboarding gave us. A Stripe
        # account id is one from its creation; elsewhere (a PayPal referral id is not a merchant id) only
        # once onboarding completed.
        dest = (conn.settings or {}).get("destination_account")
        if dest is None and acct is not None and acct.account_ref and (
                acct.status == "active" or conn.provider == "stripe"):
            dest = acct.account_ref
        if dest is None and conn.provider == "square":  # the seller whose token we use: informational
            dest = conn.id
        return _Ctx(conn, connector, dest)

    def complete_onboarding(self, vendor_id: str, connection_id: str, account_ref: str | None) -> dict[str, Any]:
        """The vendor came back from the gateway's onboarding (Stripe account link, Square OAuth, PayPal
        referral with ``merchantIdInPayPal``): the account is active, with its account reference."""
        self.hub.connections.get(vendor_id, connection_id)
        with self.db.session() as s:
            acct = s.get(PaymentGatewayAccount, connection_id)
            if acct is None or acct.vendor_id != vendor_id:
                raise NotFound("no onboarding for this connection; run the payment setup first",
                               code="no_onboarding")
            acct.status = "active"
            if account_ref:
                acct.account_ref = account_ref
            acct.next_step = {"kind": "complete"}
            out = {"connectionId": acct.connection_id, "provider": acct.provider, "status": acct.status,
                   "accountRef": acct.account_ref}
        self._ctxs.clear()
        return out

    @staticmethod
    def _gateway_class(conn: Connection) -> type[GatewayConnector] | None:
        from wedsync.connectors.registry import get_connector_class

        try:
            cls = get_connector_class(conn.provider)
        except Exception:
            return None
        return cls if isinstance(cls, type) and issubclass(cls, GatewayConnector) else None

    # -- setup --------------------------------------------------------------------------------------
    async def setup(self, vendor_id: str, gateway_config: Mapping[str, Any], *, return_url: str | None = None
                    ) -> dict[str, Any]:
        """Validate and store the vendor's gateway configuration and start onboarding at each gateway."""
        if not isinstance(gateway_config, Mapping):
            raise InvalidGatewayConfig("gatewayConfig must be an object")
        unknown = set(gateway_config) - {"primary", "fallbacks", "routingRules", "feeStructure",
                                         "complianceRequirements"}
        if unknown:
            raise InvalidGatewayConfig(f"unknown gatewayConfig fields {sorted(unknown)}")
        cfg = parse_config(gateway_config)
        fees = FeeStructure.parse(gateway_config.get("feeStructure"))
        compliance = gateway_config.get("complianceRequirements") or {}
        if not isinstance(compliance, Mapping) or set(compliance) - set(COMPLIANCE_KEYS):
            raise InvalidGatewayConfig(f"complianceRequirements takes {list(COMPLIANCE_KEYS)}")
        conns: dict[str, Connection] = {}
        for cid in cfg.connection_ids:
            try:
                conn = self.hub.connections.get(vendor_id, cid)
            except NotFound:
                raise InvalidInput(f"gateway {cid} is not a connection of this vendor",
                                   code="gateway_not_connected", details={"connectionId": cid}) from None
            if self._gateway_class(conn) is None:
                raise InvalidInput(f"connection {cid} ({conn.provider}) is not a payment gateway",
                                   code="not_a_gateway", details={"connectionId": cid})
            if conn.status != "active":
                raise InvalidInput(f"gateway connection {cid} is {conn.status}", code="gateway_not_connected",
                                   details={"connectionId": cid, "status": conn.status})
            opt = cfg.options[cid]
            if opt.provider and opt.provider not in (conn.provider, conn.provider.replace("-", "_")):
                raise InvalidGatewayConfig(f"gateway {cid} is a {conn.provider} connection, not {opt.provider}")
            conns[cid] = conn
        base = (return_url or self.hub.settings.public_url).rstrip("/")
        gateways = []
        for cid, conn in conns.items():
            ctx = await self._load_ctx(cid)
            step = await ctx.connector.onboard(vendor_id, f"{base}/payments/onboarding/{cid}/return",
                                               f"{base}/payments/onboarding/{cid}/refresh")
            status = "active" if step.kind == "complete" else "action_required"
            next_step = {"kind": step.kind, "url": step.url, "fields": list(step.fields), "message": step.message,
                         "expiresAt": step.expires_at.isoformat() if step.expires_at else None}
            with self.db.session() as s:
                acct = s.get(PaymentGatewayAccount, cid)
                if acct is None:
                    acct = PaymentGatewayAccount(connection_id=cid, vendor_id=vendor_id, provider=conn.provider)
                    s.add(acct)
                acct.status = status
                acct.account_ref = step.account_ref or acct.account_ref
                acct.next_step = next_step
            gateways.append({"connectionId": cid, "provider": conn.provider, "status": status,
                             "accountRef": step.account_ref, "onboarding": next_step,
                             "nativeSplit": type(ctx.connector).supports_native_split,
                             "currencies": sorted(type(ctx.connector).currencies)})
        stored = {"primary": gateway_config["primary"], "fallbacks": list(gateway_config.get("fallbacks") or []),
                  "routingRules": list(gateway_config.get("routingRules") or []), "feeStructure": fees.as_dict(),
                  "complianceRequirements": dict(compliance)}
        with self.db.session() as s:
            row = s.get(PaymentSetup, vendor_id)
            if row is None:
                s.add(PaymentSetup(vendor_id=vendor_id, config=stored))
            else:
                row.config = stored
        return {"vendorId": vendor_id, "gateways": gateways, "gatewayConfig": stored}

    def get_setup(self, vendor_id: str) -> dict[str, Any]:
        with self.db.read() as s:
            row = s.get(PaymentSetup, vendor_id)
            if row is None:
                raise NotFound("this vendor has no payment setup", code="no_payment_setup")
            accts = list(s.execute(select(PaymentGatewayAccount).where(
                PaymentGatewayAccount.vendor_id == vendor_id)).scalars())
        return {"vendorId": vendor_id, "gatewayConfig": row.config,
                "gateways": [{"connectionId": a.connection_id, "provider": a.provider, "status": a.status,
                              "accountRef": a.account_ref, "onboarding": a.next_step} for a in accts]}

    # -- intents ------------------------------------------------------------------------------------
    def create_intent(self, vendor_id: str, client_key: str, req: IntentRequest) -> tuple[dict[str, Any], bool]:
        """Validate and commit a transaction (nothing is sent anywhere). Same key + same request returns
        the existing one (created False); same key + another request is ``idempotency_key_reused``."""
        if not client_key or len(client_key) > 200:
            raise InvalidInput("an Idempotency-Key header (1-200 characters) is required",
                               code="idempotency_key_required")
        amount = require_positive(req.amount_minor, "amountMinor")
        currency = normalize_currency(req.currency)
        req = IntentRequest(**{**asdict(req), "currency": currency})
        if req.milestone not in MILESTONES:
            raise InvalidInput(f"milestone must be one of {list(MILESTONES)}", code="invalid_milestone")
        if req.method_type not in METHODS:
            raise InvalidInput(f"methodType must be one of {list(METHODS)}", code="invalid_method")
        if not req.payment_method or not req.booking_ref:
            raise InvalidInput("paymentMethod and bookingRef are required", code="missing_field")
        if req.sequence < 1:
            raise InvalidInput("sequence starts at 1", code="invalid_sequence")
        fingerprint = req.fingerprint()
        try:
            # One write transaction (Core, prepared statements): the key check, the routing inputs, the
            # intent and its first attempt. Routing is pure computation, so the lock is held briefly.
            with self.db.engine.begin() as c:
                existing = c.execute(_Q_BY_KEY, {"v": vendor_id, "k": client_key}).first()
                if existing is not None:
                    return self._check_replay(existing, fingerprint), False
                config = c.execute(_Q_SETUP, {"v": vendor_id}).scalar()
                if config is None:
                    raise NoGatewayAvailable("this vendor has no payment setup: POST /api/integrations/payments/setup",
                                             code="no_active_gateway")
                cfg = parse_config(config)
                conns = {r.id: r for r in c.execute(_Q_CONNS, {"v": vendor_id, "ids": list(cfg.connection_ids)})}
                disabled = set(c.execute(_Q_DISABLED, {"v": vendor_id}).scalars())
                active = set()
                for cid, conn in conns.items():
                    cls = self._gateway_class(conn)  # type: ignore[arg-type]
                    if (conn.status == "active" and cid not in disabled and cls is not None
                            and currency in cls.currencies):
                        active.add(cid)
                chosen = route(cfg, amount, currency, req.method_type, active=active)
                fees = FeeStructure.parse(config.get("feeStructure"))
                has_aff = bool(req.affiliate_id)
                split = (explicit_split(amount, req.split, has_affiliate=has_aff) if req.split is not None
                         else compute_split(amount, currency, fees, has_affiliate=has_aff))
                terms = EscrowTerms.parse(req.escrow) if req.escrow is not None else None
                now = utcnow()
                intent = PaymentIntent(
                    id=new_id(), vendor_id=vendor_id, client_key=client_key, request_hash=fingerprint,
                    booking_ref=req.booking_ref, milestone=req.milestone, sequence=req.sequence,
                    amount_minor=amount, currency=currency, payment_method=req.payment_method,
                    method_type=req.method_type, description=req.description, customer_email=req.customer_email,
                    affiliate_id=req.affiliate_id, split=split.as_dict(), escrow=terms.as_dict() if terms else None,
                    route=list(chosen.candidates), failover_on_decline=chosen.failover_on_decline,
                    status="created", refunded_split={}, attempts=0, refunded_minor=0, native_split=False,
                    created_at=now, updated_at=now)
                # The first attempt (route[0], key "<intent>-1") is committed with the intent: the key is
                # durable before any call, and the workflow's first step saves a transaction. Only this
                # process knows the row was never sent (``_preopened``); any other run treats it as maybe
                # sent (lookup first).
                first = chosen.candidates[0]
                attempt = {"id": new_id(), "vendor_id": vendor_id, "intent_id": intent.id, "attempt_no": 1,
                           "connection_id": first, "provider": conns[first].provider,
                           "idempotency_key": _key(intent.id, 1), "status": "sent", "lookups": 0,
                           "gateway_ms": 0.0, "gateway_ref": None, "decline_code": None, "message": None}
                c.execute(insert(_I), [{k: getattr(intent, k) for k in _I_COLS}])
                c.execute(insert(_A), [{**attempt, "native_split": False, "started_at": now, "finished_at": None}])
        except IntegrityError:  # a concurrent request with the same key won the race
            existing = self._by_client_key(vendor_id, client_key)
            if existing is None:
                raise
            return self._check_replay(existing, fingerprint), False
        if len(self._preopened) > 4096:
            self._preopened.clear()  # never started here: those take the lookup path, which is always safe
        self._preopened[(intent.id, 1)] = (_Row(**attempt), intent)
        return self.view(intent), True

    def _by_client_key(self, vendor_id: str, client_key: str) -> PaymentIntent | None:
        with self.db.read() as s:
            return s.execute(select(PaymentIntent).where(PaymentIntent.vendor_id == vendor_id,
                                                         PaymentIntent.client_key == client_key)).scalar()

    def _check_replay(self, existing: PaymentIntent, fingerprint: str) -> dict[str, Any]:
        if existing.request_hash != fingerprint:
            raise Conflict("this Idempotency-Key was used for a different transaction; nothing was charged",
                           code="idempotency_key_reused", details={"transactionId": existing.id})
        return self.view(existing)

    def _intent(self, vendor_id: str, intent_id: str) -> PaymentIntent:
        with self.db.read() as s:
            intent = s.get(PaymentIntent, intent_id)
        if intent is None or intent.vendor_id != vendor_id:
            raise NotFound("transaction not found", code="unknown_transaction")
        return intent

    def get_intent(self, vendor_id: str, intent_id: str) -> dict[str, Any]:
        return self.view(self._intent(vendor_id, intent_id), detail=True)

    def list_intents(self, vendor_id: str, *, booking_ref: str | None = None, status: str | None = None,
                     limit: int = 50, after: str | None = None) -> list[dict[str, Any]]:
        """Newest first; ``after`` is the last id of the previous page; ``status`` one of ``INTENT_STATUSES``
        (anything else is 422 ``invalid_status``, not an empty page)."""
        if status is not None and status not in INTENT_STATUSES:
            raise InvalidInput(f"status must be one of {list(INTENT_STATUSES)}", code="invalid_status")
        with self.db.read() as s:
            q = select(PaymentIntent).where(PaymentIntent.vendor_id == vendor_id)
            if after:
                cursor_row(s, PaymentIntent, after, PaymentIntent.vendor_id == vendor_id)
                q = q.where(PaymentIntent.id < after)
            if booking_ref:
                q = q.where(PaymentIntent.booking_ref == booking_ref)
            if status:
                q = q.where(PaymentIntent.status == status)
            rows = list(s.execute(q.order_by(PaymentIntent.id.desc()).limit(max(1, min(limit, 500)))).scalars())
        return [self.view(r) for r in rows]

    def view(self, i: PaymentIntent, *, detail: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": i.id, "status": i.status, "bookingRef": i.booking_ref, "milestone": i.milestone,
            "sequence": i.sequence, "amountMinor": i.amount_minor, "currency": i.currency,
            "methodType": i.method_type, "affiliateId": i.affiliate_id, "split": i.split, "escrow": i.escrow,
            "route": i.route, "failoverOnDecline": i.failover_on_decline, "gateway": i.provider,
            "connectionId": i.connection_id, "gatewayRef": i.gateway_ref,
            "nativeSplit": i.native_split, "attempts": i.attempts, "failureCode": i.failure_code,
            "failureMessage": i.failure_message, "refundedMinor": i.refunded_minor,
            "createdAt": i.created_at.isoformat() if i.created_at else None,
            "finalizedAt": i.finalized_at.isoformat() if i.finalized_at else None,
        }
        if detail:
            with self.db.read() as s:
                attempts = list(s.execute(select(PaymentAttempt).where(PaymentAttempt.intent_id == i.id)
                                          .order_by(PaymentAttempt.attempt_no)).scalars())
                hold = s.execute(select(EscrowHold).where(EscrowHold.intent_id == i.id)).scalar()
                refunds = list(s.execute(select(PaymentRefund).where(PaymentRefund.intent_id == i.id)).scalars())
            out["attemptLog"] = [{"no": a.attempt_no, "provider": a.provider, "connectionId": a.connection_id,
                                  "status": a.status, "gatewayRef": a.gateway_ref, "declineCode": a.decline_code,
                                  "lookups": a.lookups, "message": a.message} for a in attempts]
            out["escrowHold"] = self._hold_view(hold) if hold else None
            out["refunds"] = [self._refund_view(r) for r in refunds]
        return out

    # -- the transaction's steps ----------------------------------------------------------------------
    def begin(self, intent_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            intent = s.get(PaymentIntent, intent_id)
            if intent is None:
                raise NotFound("transaction not found", code="unknown_transaction")
            if intent.status == "created":
                intent.status = "processing"
            pinned = s.execute(select(PaymentAttempt.attempt_no).where(
                PaymentAttempt.intent_id == intent_id, PaymentAttempt.status.in_(("sent", "unknown")))
                .order_by(PaymentAttempt.attempt_no.desc())).scalar()
            last = s.execute(select(func.max(PaymentAttempt.attempt_no)).where(
                PaymentAttempt.intent_id == intent_id)).scalar()
            if pinned is not None and (intent_id, int(pinned)) in self._preopened:  # committed here, never sent
                last, pinned = int(pinned) - 1, None
            return {"id": intent.id, "status": intent.status, "route": list(intent.route),
                    "failover_on_decline": intent.failover_on_decline, "attempts": int(last or 0),
                    "pinned_attempt": pinned}

    def plan_of(self, intent: Mapping[str, Any]) -> dict[str, Any]:
        """The workflow's plan from a freshly committed intent's view (saves a step)."""
        return {"id": intent["id"], "status": "processing", "route": list(intent["route"]),
                "failover_on_decline": bool(intent.get("failoverOnDecline")), "attempts": 0, "pinned_attempt": None}

    def _open_attempt(self, intent_id: str, attempt_no: int, connection_id: str, provider: str | None = None
                      ) -> tuple[Any, Any, bool]:
        """The attempt row, committed before the call (created True), or the one a previous run left.
        (Core statements: this and ``_record`` are the hot path of every transaction.)"""
        with self.db.engine.begin() as c:
            row = c.execute(select(_A).where(_A.c.intent_id == intent_id, _A.c.attempt_no == attempt_no)).first()
            intent = c.execute(select(_I).where(_I.c.id == intent_id)).first()
            if intent is None:
                raise NotFound("transaction not found", code="unknown_transaction")
            if row is not None:
                return row, intent, False
            if provider is None:
                provider = c.execute(select(Connection.provider).where(Connection.id == connection_id)).scalar()
            c.execute(insert(_A).values(id=new_id(), vendor_id=intent.vendor_id, intent_id=intent_id,
                                        attempt_no=attempt_no, connection_id=connection_id,
                                        provider=provider or "unknown", idempotency_key=_key(intent_id, attempt_no),
                                        status="sent"))
            c.execute(update(_I).where(_I.c.id == intent_id).values(
                attempts=max(intent.attempts, attempt_no),
                status="processing" if intent.status == "created" else intent.status))
            row = c.execute(select(_A).where(_A.c.intent_id == intent_id, _A.c.attempt_no == attempt_no)).one()
        return row, intent, True

    def _charge_request(self, intent: PaymentIntent, ctx: _Ctx) -> ChargeRequest:
        split = Split.from_dict(intent.split)
        cls = type(ctx.connector)
        instr: SplitInstruction | None = None
        if ctx.destination and intent.escrow and cls.supports_separate_transfers:
            instr = SplitInstruction(ctx.destination, split.application_fee, transfer_group=f"bk_{intent.id}",
                                     mode="separate")
        elif (ctx.destination and not intent.escrow and cls.supports_native_split and split.vendor > 0
              and split.application_fee <= intent.amount_minor * cls.max_application_fee_ratio):
            instr = SplitInstruction(ctx.destination, split.application_fee, mode="destination")
        req = ChargeRequest(reference=intent.id, amount_minor=intent.amount_minor, currency=intent.currency,
                            payment_method=intent.payment_method, description=intent.description,
                            customer_email=intent.customer_email, split=instr,
                            metadata={"booking": intent.booking_ref[:100], "milestone": intent.milestone,
                                      "vendor": intent.vendor_id})
        if instr is not None:
            try:
                ctx.connector.check_split(req)
            except InvalidInput:  # the gateway cannot split this one natively: split on the ledger
                req = replace(req, split=None)
        return req

    async def _call(self, fn: Callable[[], Awaitable[GatewayResult]], conn_id: str, *, lookup: bool = False
                    ) -> tuple[GatewayResult, float]:
        """Run one gateway call, classifying what the connector raises (nothing sent, or maybe executed).
        For a lookup, any failure to ask is UNKNOWN: only the gateway's own answer proves "not executed"."""
        start = time.perf_counter()
        try:
            try:
                result = await fn()
            except (ConnectorError, InvalidInput, NotImplementedCapability) as exc:
                if lookup:
                    return GatewayResult(Outcome.UNKNOWN, message=f"lookup failed: {type(exc).__name__}: {exc}"[:500],
                                         retryable=True), (time.perf_counter() - start) * 1000.0
                raise
        except CircuitOpen as exc:
            result = GatewayResult(Outcome.NOT_EXECUTED, message=str(exc), retryable=True, raw_status="circuit_open")
        except ReauthRequired as exc:
            await asyncio.to_thread(self.hub.connections.set_status, conn_id, "error", str(exc))
            result = GatewayResult(Outcome.NOT_EXECUTED, message=str(exc), raw_status="reauth_required")
        except InvalidInput as exc:
            result = GatewayResult(Outcome.NOT_EXECUTED, decline_code=exc.code, message=exc.message)
        except NotImplementedCapability as exc:
            result = GatewayResult(Outcome.NOT_EXECUTED, message=exc.message)
        except (OutcomeUnknown, Retriable, ConnectorError) as exc:  # sent, answer lost: maybe executed
            result = GatewayResult(Outcome.UNKNOWN, message=f"{type(exc).__name__}: {exc}")
        return result, (time.perf_counter() - start) * 1000.0

    async def attempt(self, intent_id: str, attempt_no: int, connection_id: str) -> dict[str, Any]:
        """One charge attempt: commit the attempt (and its key), call the gateway, record the outcome.
        A replay of this step (the row exists, outcome not recorded) resolves by lookup first."""
        ctx: _Ctx | None = None
        try:
            ctx = await self._ctx(connection_id)
        except (NotFound, InvalidInput):
            ctx = None
        pre = self._preopened.pop((intent_id, attempt_no), None)  # popped before the call: sent at most once
        if pre is not None and pre[0].connection_id == connection_id:
            (row, intent), fresh = pre, True
        else:
            row, intent, fresh = await asyncio.to_thread(self._open_attempt, intent_id, attempt_no, connection_id,
                                                         ctx.conn.provider if ctx else None)
        if row.status not in ("sent", "unknown"):
            return {"outcome": row.status, "gateway_ref": row.gateway_ref, "decline_code": row.decline_code,
                    "message": row.message, "retryable": False,
                    "settle": row.status == "succeeded" and bool(intent.escrow) and not intent.native_split}
        if not fresh:
            return await self.resolve(intent_id, attempt_no)
        if ctx is None:
            result, ms = GatewayResult(Outcome.NOT_EXECUTED, message="the gateway connection is gone"), 0.0
        else:
            gateway = ctx.connector
            req = self._charge_request(intent, ctx)
            result, ms = await self._call(lambda: gateway.charge(req, row.idempotency_key), row.connection_id)
        return await asyncio.to_thread(self._record, intent_id, attempt_no, result, ms, False)

    async def resolve(self, intent_id: str, attempt_no: int) -> dict[str, Any]:
        """Resolve a maybe-executed attempt at its own gateway: look it up; if the gateway provably has no
        such charge, replay the *same* key there (the gateway deduplicates it)."""
        with self.db.read() as s:
            row = s.execute(select(PaymentAttempt).where(PaymentAttempt.intent_id == intent_id,
                                                         PaymentAttempt.attempt_no == attempt_no)).scalar()
            intent = s.get(PaymentIntent, intent_id)
        if row is None or intent is None:
            raise NotFound("attempt not found")
        if row.status not in ("sent", "unknown"):
            return {"outcome": row.status, "gateway_ref": row.gateway_ref, "decline_code": row.decline_code,
                    "message": row.message, "retryable": False}
        ctx = await self._ctx(row.connection_id)
        result, ms = await self._call(lambda: ctx.connector.lookup(intent.id, row.idempotency_key), row.connection_id,
                                      lookup=True)
        if result.outcome in (Outcome.NOT_EXECUTED, Outcome.UNKNOWN):
            # Replay the same key at the same gateway: it answers the stored result or runs the attempt
            # once. Only a lookup that proved "not executed" lets a failed replay count as not executed
            # (an idempotency conflict while the first request is still in flight must not fail over).
            proven = result.outcome is Outcome.NOT_EXECUTED
            req = self._charge_request(intent, ctx)
            result, ms2 = await self._call(lambda: ctx.connector.charge(req, row.idempotency_key), row.connection_id)
            ms += ms2
            if result.outcome is Outcome.NOT_EXECUTED and not proven:
                result = GatewayResult(Outcome.UNKNOWN, message=f"replay not executed ({result.message}); the "
                                       "first request may still be in flight", raw_status=result.raw_status)
        return await asyncio.to_thread(self._record, intent_id, attempt_no, result, ms, True)

    def _record(self, intent_id: str, attempt_no: int, r: GatewayResult, gateway_ms: float, lookup: bool
                ) -> dict[str, Any]:
        """The outcome of one call, in one transaction with the intent's state and the ledger postings."""
        with self.db.engine.begin() as c:
            pg = c.dialect.name == "postgresql"
            row = c.execute(_Q_ATT_LOCK if pg else _Q_ATT, {"i": intent_id, "n": attempt_no}).one()
            intent = c.execute(_Q_INT_LOCK if pg else _Q_INT, {"i": intent_id}).one()
            if row.status not in ("sent", "unknown"):  # already recorded (a concurrent resolver)
                return {"outcome": row.status, "gateway_ref": row.gateway_ref, "retryable": False,
                        "decline_code": row.decline_code, "message": row.message,
                        "settle": row.status == "succeeded" and bool(intent.escrow) and not intent.native_split}
            values: dict[str, Any] = {
                "lookups": row.lookups + int(lookup), "gateway_ms": (row.gateway_ms or 0.0) + gateway_ms,
                "status": r.outcome.value, "gateway_ref": r.gateway_ref or row.gateway_ref,
                "decline_code": r.decline_code, "message": r.message or None, "native_split": r.native_split}
            if r.outcome is not Outcome.UNKNOWN:
                values["finished_at"] = utcnow()
            c.execute(_U_ATT, {"_id": row.id, **values})
            if (intent.attempts < attempt_no or intent.status == "created") and not (
                    r.outcome is Outcome.SUCCEEDED and intent.status != "succeeded"):
                # an attempt committed with its intent: the intent's counters follow here
                c.execute(_U_INT, {"_id": intent_id, "attempts": max(intent.attempts, attempt_no),
                                   "status": "processing" if intent.status == "created" else intent.status})
            native = bool(intent.native_split)
            if r.outcome is Outcome.SUCCEEDED and intent.status != "succeeded":
                self._succeed(c, intent, row, r)
                native = bool(r.native_split)
            settle = r.outcome is Outcome.SUCCEEDED and bool(intent.escrow) and not native
        return _result_dict(r, gateway_ms, settle)

    def _succeed(self, c: Any, intent: Any, row: Any, r: GatewayResult) -> None:
        now = utcnow()
        c.execute(_U_INT, {
            "_id": intent.id, "status": "succeeded", "connection_id": row.connection_id, "provider": row.provider,
            "gateway_ref": r.gateway_ref, "attempts": max(intent.attempts, row.attempt_no),
            "native_split": bool(r.native_split), "transfer_ref": r.extra.get("transfer_id") if r.extra else None,
            "finalized_at": now, "failure_code": None, "failure_message": None})
        split = Split.from_dict(intent.split)
        held = 0
        if intent.escrow:
            terms = EscrowTerms.from_dict(intent.escrow)
            held = terms.held_part(split.vendor)
            if held:
                c.execute(insert(EscrowHold).values(
                    id=new_id(), vendor_id=intent.vendor_id, intent_id=intent.id, booking_ref=intent.booking_ref,
                    currency=intent.currency, held_minor=held, terms=terms.as_dict(), status="held"))
        parties = L.Parties(vendor_id=intent.vendor_id, connection_id=row.connection_id,
                            affiliate_id=intent.affiliate_id)
        post_txns(c, intent.vendor_id, L.charge_txns(intent.id, intent.currency, parties, split, held=held,
                                                    native_transfer=bool(r.native_split),
                                                    processing_fee=int(r.fee_minor or 0)), intent.id)

    async def settle(self, intent_id: str) -> dict[str, Any]:
        """After a success: pay out, by a separate transfer, the vendor's part that is not held when the
        gateway charged on the platform's account (Stripe separate charges and transfers)."""
        with self.db.read() as s:
            intent = s.get(PaymentIntent, intent_id)
            hold = s.execute(select(EscrowHold).where(EscrowHold.intent_id == intent_id)).scalar()
        assert intent is not None
        if intent.escrow and not intent.native_split and intent.connection_id:
            split = Split.from_dict(intent.split)
            free = split.vendor - (hold.held_minor if hold else 0)
            ctx = await self._ctx(intent.connection_id)
            if free > 0 and ctx.destination and type(ctx.connector).supports_separate_transfers:
                await self.transfer(intent, "transfer", "payout", free, seq=0)
        return self.view(self._intent(intent.vendor_id, intent_id))

    def finish(self, intent_id: str, status: str, code: str | None, message: str | None) -> dict[str, Any]:
        with self.db.session() as s:
            intent = s.get(PaymentIntent, intent_id)
            assert intent is not None
            if intent.status in OPEN:
                intent.status = status
                intent.failure_code, intent.failure_message = code, (message or "")[:2000] or None
                if status in FINAL:
                    intent.finalized_at = utcnow()
            return self.view(intent)

    async def run_inline(self, intent_id: str) -> dict[str, Any]:
        """Process a transaction in this process without DBOS (tests, tools)."""
        await drive_payment(intent_id, DirectSteps(self))
        with self.db.read() as s:
            intent = s.get(PaymentIntent, intent_id)
        assert intent is not None
        return self.view(intent)

    # -- transfers ----------------------------------------------------------------------------------
    async def transfer(self, intent: PaymentIntent, kind: str, reason: str, amount: int, *, seq: int | str
                       ) -> dict[str, Any]:
        """A separate transfer to the vendor (``kind="transfer"``) or a reversal of the charge's transfer,
        committed with its key before the call; the ledger follows its success."""
        key = f"{intent.id}-{'tr' if kind == 'transfer' else 'rv'}{reason[:2]}{seq}"
        with self.db.session() as s:
            row = s.execute(select(PaymentTransfer).where(PaymentTransfer.idempotency_key == key)).scalar()
            if row is None:
                source = intent.gateway_ref
                if kind == "reversal":  # the vendor's money is in the latest transfer made to it (a re-transfer
                    # after a won dispute replaces the charge's own transfer, which was reversed)
                    source = s.execute(select(PaymentTransfer.gateway_ref).where(
                        PaymentTransfer.intent_id == intent.id, PaymentTransfer.kind == "transfer",
                        PaymentTransfer.reason == "dispute_won", PaymentTransfer.status == "succeeded")
                        .order_by(PaymentTransfer.id.desc())).scalar() or intent.transfer_ref
                row = PaymentTransfer(id=new_id(), vendor_id=intent.vendor_id, intent_id=intent.id, kind=kind,
                                      reason=reason, amount_minor=amount, currency=intent.currency,
                                      source_ref=source, idempotency_key=key, status="pending")
                s.add(row)
        return await self.run_transfer(row.id)

    async def run_transfer(self, transfer_id: str) -> dict[str, Any]:
        with self.db.read() as s:
            row = s.get(PaymentTransfer, transfer_id)
            assert row is not None
            intent = s.get(PaymentIntent, row.intent_id)
        assert intent is not None and intent.connection_id is not None
        if row.status in ("succeeded", "failed"):
            return {"id": row.id, "status": row.status}
        ctx = await self._ctx(intent.connection_id)
        conn = ctx.connector
        if row.kind == "transfer":
            dest = ctx.destination or ""
            result, _ = await self._call(lambda: conn.transfer(dest, row.amount_minor, row.currency,
                                                               row.idempotency_key, transfer_group=f"bk_{intent.id}",
                                                               source_charge=intent.gateway_ref),
                                         intent.connection_id)
        else:
            src = row.source_ref or ""
            result, _ = await self._call(lambda: conn.reverse_transfer(src, row.amount_minor, row.idempotency_key),
                                         intent.connection_id)
        with self.db.session() as s:
            row = s.get(PaymentTransfer, transfer_id)
            intent = s.get(PaymentIntent, row.intent_id) if row else None
            assert row is not None and intent is not None
            if row.status in ("succeeded", "failed"):
                return {"id": row.id, "status": row.status}
            row.gateway_ref = result.gateway_ref or row.gateway_ref
            row.message = result.message
            if result.outcome is Outcome.SUCCEEDED:
                row.status, row.finished_at = "succeeded", utcnow()
                builder = L.transfer_txn if row.kind == "transfer" else L.transfer_reversal_txn
                post_txn(s, intent.vendor_id, builder(f"{row.kind}:{row.id}", row.currency, _parties(intent),
                                                      row.amount_minor), intent.id)
            elif result.outcome is Outcome.UNKNOWN:
                row.status = "unknown"
            else:  # not done at the gateway: the amount stays payable on the ledger
                row.status, row.finished_at = "failed", utcnow()
            return {"id": row.id, "status": row.status, "gatewayRef": row.gateway_ref}

    # -- refunds ------------------------------------------------------------------------------------
    async def refund(self, vendor_id: str, intent_id: str, amount_minor: int | None = None, *,
                     client_key: str | None = None, kind: str = "refund", share: Split | None = None
                     ) -> dict[str, Any]:
        """Refund (part of) a payment. The parties give back in proportion to what remains of their parts
        (largest remainder; a vendor's escrow first); native splits are reversed at the gateway."""
        refund_id = await asyncio.to_thread(self._open_refund, vendor_id, intent_id, amount_minor, client_key,
                                            kind, share)
        return await self.run_refund(refund_id)

    def _open_refund(self, vendor_id: str, intent_id: str, amount_minor: int | None, client_key: str | None,
                     kind: str, share: Split | None) -> str:
        with self.db.session() as s:
            intent = s.get(PaymentIntent, intent_id, with_for_update=True)  # concurrent refunds queue here
            if intent is None or intent.vendor_id != vendor_id:
                raise NotFound("transaction not found", code="unknown_transaction")
            if client_key:
                prior = s.execute(select(PaymentRefund).where(PaymentRefund.intent_id == intent_id,
                                                              PaymentRefund.client_key == client_key)).scalar()
                if prior is not None:
                    if amount_minor is not None and prior.amount_minor != amount_minor:
                        raise Conflict("this Idempotency-Key was used for a different refund",
                                       code="idempotency_key_reused")
                    return prior.id
            if intent.status != "succeeded":
                raise Conflict(f"only a succeeded payment can be refunded (this one is {intent.status})",
                               code="not_refundable")
            remaining = _remaining(intent)
            if share is None:
                amount = require_positive(amount_minor if amount_minor is not None else remaining.total, "amountMinor")
                if amount > remaining.total:
                    raise InvalidInput(f"refund exceeds what remains ({remaining.total})",
                                       code="amount_exceeds_remaining")
                share = share_of(amount, remaining)
            else:
                amount = share.total
                if amount <= 0 or any(a > b for a, b in zip(share.parts(), remaining.parts(), strict=True)):
                    raise InvalidInput("nothing left to return", code="amount_exceeds_remaining")
            hold = s.execute(select(EscrowHold).where(EscrowHold.intent_id == intent_id)).scalar()
            from_escrow = 0
            if hold is not None:
                from_escrow = min(share.vendor, hold.held_minor - hold.released_minor - hold.returned_minor)
                hold.returned_minor += from_escrow  # reserved now; given back if the refund fails
            intent.refunded_minor += amount
            intent.refunded_split = Split.from_dict(intent.refunded_split or {"vendor": 0, "platform": 0}
                                                    ).plus(share).as_dict()
            row = PaymentRefund(id=new_id(), vendor_id=vendor_id, intent_id=intent_id, client_key=client_key,
                                kind=kind, amount_minor=amount, currency=intent.currency, share=share.as_dict(),
                                from_escrow=from_escrow, status="pending")
            s.add(row)
            return row.id

    async def run_refund(self, refund_id: str) -> dict[str, Any]:
        with self.db.read() as s:
            row = s.get(PaymentRefund, refund_id)
            assert row is not None
            intent = s.get(PaymentIntent, row.intent_id)
        assert intent is not None and intent.connection_id and intent.gateway_ref
        if row.status in ("succeeded", "failed"):
            return self._refund_view(row)
        ctx = await self._ctx(intent.connection_id)
        gref = intent.gateway_ref
        result, _ = await self._call(lambda: ctx.connector.refund(gref, row.amount_minor, row.currency, row.id,
                                                                  reverse_split=intent.native_split),
                                     intent.connection_id)
        return await asyncio.to_thread(self._record_refund, refund_id, result)

    def _record_refund(self, refund_id: str, r: GatewayResult) -> dict[str, Any]:
        with self.db.session() as s:
            row = s.get(PaymentRefund, refund_id)
            assert row is not None
            intent = s.get(PaymentIntent, row.intent_id)
            assert intent is not None
            if row.status in ("succeeded", "failed"):
                return self._refund_view(row)
            row.gateway_ref = r.gateway_ref or row.gateway_ref
            row.message = r.message
            hold = s.execute(select(EscrowHold).where(EscrowHold.intent_id == intent.id)).scalar()
            share = Split.from_dict(row.share)
            if r.outcome is Outcome.SUCCEEDED:
                row.status, row.finished_at = "succeeded", utcnow()
                parties = _parties(intent)
                post_txn(s, intent.vendor_id, L.refund_txn(f"refund:{row.id}", row.currency, parties, share,
                                                           from_escrow=row.from_escrow), intent.id)
                paid_natively = share.vendor - row.from_escrow
                if intent.native_split and paid_natively > 0:  # the gateway reversed the transfer with it
                    post_txn(s, intent.vendor_id, L.transfer_reversal_txn(f"refund-reversal:{row.id}", row.currency,
                                                                          parties, paid_natively), intent.id)
                if hold is not None:
                    self._hold_status(hold, cancelled=row.kind == "cancellation")
            elif r.outcome is Outcome.UNKNOWN:
                row.status = "unknown"  # the sweep replays the same key
            else:
                row.status, row.finished_at = "failed", utcnow()
                intent.refunded_minor -= row.amount_minor
                intent.refunded_split = Split.from_dict(intent.refunded_split).minus(share).as_dict()
                if hold is not None:
                    hold.returned_minor -= row.from_escrow
            return self._refund_view(row)

    @staticmethod
    def _refund_view(r: PaymentRefund) -> dict[str, Any]:
        return {"id": r.id, "transactionId": r.intent_id, "kind": r.kind, "amountMinor": r.amount_minor,
                "currency": r.currency, "share": r.share, "fromEscrow": r.from_escrow, "status": r.status,
                "gatewayRef": r.gateway_ref, "message": r.message}

    # -- escrow -------------------------------------------------------------------------------------
    @staticmethod
    def _hold_status(hold: EscrowHold, *, cancelled: bool = False) -> None:
        left = hold.held_minor - hold.released_minor - hold.returned_minor
        if left > 0:
            hold.status = "partially_released" if hold.released_minor else "held"
        elif cancelled or (hold.returned_minor and not hold.released_minor):
            hold.status = "cancelled"
        else:
            hold.status = "released"

    @staticmethod
    def _hold_view(h: EscrowHold) -> dict[str, Any]:
        return {"id": h.id, "transactionId": h.intent_id, "bookingRef": h.booking_ref, "currency": h.currency,
                "heldMinor": h.held_minor, "releasedMinor": h.released_minor, "returnedMinor": h.returned_minor,
                "remainingMinor": h.held_minor - h.released_minor - h.returned_minor, "terms": h.terms,
                "status": h.status}

    def list_holds(self, vendor_id: str, booking_ref: str | None = None, *, limit: int | None = None,
                   after: str | None = None) -> list[dict[str, Any]]:
        """Oldest first; ``after`` is the last id of the previous page, ``limit`` None: all of them."""
        with self.db.read() as s:
            q = select(EscrowHold).where(EscrowHold.vendor_id == vendor_id)
            if booking_ref:
                q = q.where(EscrowHold.booking_ref == booking_ref)
            if after:
                cursor_row(s, EscrowHold, after, EscrowHold.vendor_id == vendor_id)
                q = q.where(EscrowHold.id > after)
            return [self._hold_view(h) for h in s.execute(q.order_by(EscrowHold.id).limit(limit)).scalars()]

    async def release(self, vendor_id: str, hold_id: str, amount_minor: int | None = None, *,
                      reason: str = "manual") -> dict[str, Any]:
        """Release (part of) a hold to the vendor: escrow -> payable on the ledger, and a separate transfer
        at the gateway where it has them (Stripe)."""
        seq, amount, intent = await asyncio.to_thread(self._open_release, vendor_id, hold_id, amount_minor, reason)
        if intent.connection_id:
            ctx = await self._ctx(intent.connection_id)
            if not intent.native_split and ctx.destination and type(ctx.connector).supports_separate_transfers:
                await self.transfer(intent, "transfer", "escrow_release", amount, seq=seq)
        with self.db.read() as s:
            hold = s.get(EscrowHold, hold_id)
            assert hold is not None
            return self._hold_view(hold)

    def _open_release(self, vendor_id: str, hold_id: str, amount_minor: int | None, reason: str
                      ) -> tuple[int, int, PaymentIntent]:
        with self.db.session() as s:
            hold = s.get(EscrowHold, hold_id, with_for_update=True)  # two releasers: one waits (PostgreSQL)
            if hold is None or hold.vendor_id != vendor_id:
                raise NotFound("escrow hold not found", code="unknown_hold")
            left = hold.held_minor - hold.released_minor - hold.returned_minor
            if left <= 0:
                raise Conflict(f"nothing left to release (hold is {hold.status})", code="escrow_not_releasable")
            amount = left if amount_minor is None else require_positive(amount_minor, "amountMinor")
            if amount > left:
                raise InvalidInput(f"release exceeds what is held ({left})", code="amount_exceeds_remaining")
            hold.releases += 1
            hold.released_minor += amount
            self._hold_status(hold)
            post_txn(s, vendor_id, L.escrow_release_txn(f"escrow:{hold.id}:release:{hold.releases}", hold.currency,
                                                        vendor_id, amount), hold.intent_id)
            intent = s.get(PaymentIntent, hold.intent_id)
            assert intent is not None
            log.info("escrow.released", hold=hold.id, amount=amount, reason=reason)
            return hold.releases, amount, intent

    async def cancel_hold(self, vendor_id: str, hold_id: str) -> dict[str, Any]:
        """Cancel a booking's escrow: the customer gets back what was not released (the held vendor part
        and the platform's and affiliate's remaining fees), by a gateway refund."""
        with self.db.read() as s:
            hold = s.get(EscrowHold, hold_id)
            if hold is None or hold.vendor_id != vendor_id:
                raise NotFound("escrow hold not found", code="unknown_hold")
            intent = s.get(PaymentIntent, hold.intent_id)
        assert intent is not None
        left = hold.held_minor - hold.released_minor - hold.returned_minor
        if left <= 0:
            raise Conflict(f"nothing held to cancel (hold is {hold.status})", code="escrow_not_releasable")
        rem = _remaining(intent)
        share = Split(left, rem.platform, rem.affiliate)
        refund = await self.refund(vendor_id, intent.id, kind="cancellation", share=share,
                                   client_key=f"cancel-{hold_id}")
        with self.db.read() as s:
            hold = s.get(EscrowHold, hold_id)
            assert hold is not None
            return {**self._hold_view(hold), "refund": refund}

    async def approve_milestone(self, vendor_id: str, booking_ref: str, milestone: str) -> dict[str, Any]:
        with self.db.read() as s:
            known = s.execute(select(PaymentIntent.id).where(PaymentIntent.vendor_id == vendor_id,
                                                             PaymentIntent.booking_ref == booking_ref).limit(1)).first()
        if known is None:
            raise NotFound("booking not found", code="unknown_booking")
        with self.db.session() as s:
            if s.get(MilestoneApproval, (vendor_id, booking_ref, milestone)) is None:
                s.add(MilestoneApproval(vendor_id=vendor_id, booking_ref=booking_ref, milestone=milestone))
        released = await self.release_due(vendor_id=vendor_id, booking_ref=booking_ref)
        return {"bookingRef": booking_ref, "milestone": milestone, "released": released}

    async def release_due(self, *, vendor_id: str | None = None, booking_ref: str | None = None,
                          now: datetime | None = None) -> list[dict[str, Any]]:
        """Release every hold whose condition is met (a date passed, a milestone approved)."""
        now = now or utcnow()
        with self.db.read() as s:
            q = select(EscrowHold).where(EscrowHold.status.in_(("held", "partially_released")))
            if vendor_id:
                q = q.where(EscrowHold.vendor_id == vendor_id)
            if booking_ref:
                q = q.where(EscrowHold.booking_ref == booking_ref)
            holds = list(s.execute(q).scalars())
            approved = {(a.vendor_id, a.booking_ref, a.milestone)
                        for a in s.execute(select(MilestoneApproval)).scalars()}
        out = []
        for h in holds:
            terms = EscrowTerms.from_dict(h.terms)
            names = [m for (v, b, m) in approved if v == h.vendor_id and b == h.booking_ref]
            if terms.releasable(now, names):
                try:
                    out.append(await self.release(h.vendor_id, h.id, reason=terms.kind))
                except Conflict:
                    continue
        return out

    # -- balances and ledger ------------------------------------------------------------------------
    def balances(self, vendor_id: str) -> dict[str, Any]:
        """Balances from the ledger (owed to each party: positive)."""
        with self.db.read() as s:
            rows = s.execute(select(LedgerEntry.account, LedgerEntry.currency, func.sum(LedgerEntry.amount))
                             .where(LedgerEntry.vendor_id == vendor_id)
                             .group_by(LedgerEntry.account, LedgerEntry.currency)).all()
        out: dict[str, Any] = {"vendor": {}, "platform": {}, "affiliates": {}, "clearing": {}}
        for account, currency, total in rows:
            total = int(total or 0)
            parts = account.split(":")
            if parts[0] == "vendor":
                out["vendor"].setdefault(currency, {"payable": 0, "escrow": 0})[parts[2]] = -total
            elif parts[0] == "platform":
                out["platform"].setdefault(currency, {})[parts[1]] = -total if parts[1] == "fees" else total
            elif parts[0] == "affiliate":
                out["affiliates"].setdefault(parts[1], {})[currency] = -total
            elif parts[0] == "clearing":
                out["clearing"].setdefault(parts[1], {})[currency] = total
        return out

    def ledger_check(self, vendor_id: str | None = None) -> dict[str, Any]:
        """Totals that must hold: every currency nets to zero; every header has its entries."""
        with self.db.read() as s:
            q = select(LedgerEntry.currency, func.sum(LedgerEntry.amount), func.count())
            tq = select(func.count()).select_from(LedgerTransaction)
            if vendor_id:
                q = q.where(LedgerEntry.vendor_id == vendor_id)
                tq = tq.where(LedgerTransaction.vendor_id == vendor_id)
            sums = {c: int(v or 0) for c, v, _ in s.execute(q.group_by(LedgerEntry.currency)).all()}
            txns = int(s.execute(tq).scalar_one())
        return {"balanced": all(v == 0 for v in sums.values()), "netByCurrency": sums, "transactions": txns}

    def ledger(self, vendor_id: str, *, intent_id: str | None = None, limit: int = 200,
               after: str | None = None) -> list[dict[str, Any]]:
        """Oldest first; ``after`` is the last id of the previous page."""
        with self.db.read() as s:
            q = select(LedgerTransaction).where(LedgerTransaction.vendor_id == vendor_id)
            if after:
                cursor_row(s, LedgerTransaction, after, LedgerTransaction.vendor_id == vendor_id)
                q = q.where(LedgerTransaction.id > after)
            if intent_id:
                q = q.where(LedgerTransaction.intent_id == intent_id)
            txns = list(s.execute(q.order_by(LedgerTransaction.id).limit(limit)).scalars())
            ids = [t.id for t in txns]
            entries = list(s.execute(select(LedgerEntry).where(LedgerEntry.txn_id.in_(ids))
                                     .order_by(LedgerEntry.id)).scalars()) if ids else []
        by: dict[str, list[dict[str, Any]]] = {}
        for e in entries:
            by.setdefault(e.txn_id, []).append({"account": e.account, "currency": e.currency, "amount": e.amount})
        return [{"id": t.id, "reference": t.reference, "kind": t.kind, "transactionId": t.intent_id,
                 "createdAt": t.created_at.isoformat(), "entries": by.get(t.id, [])} for t in txns]

    # -- disputes -----------------------------------------------------------------------------------
    async def on_event(self, row: InboxRow) -> str:
        """A verified gateway webhook: update intents, refunds and disputes idempotently."""
        ctx = await self._ctx(row.connection_id)
        ev = ctx.connector.parse_event(row.body, {})
        if ev.dispute is not None and ev.kind in (EventKind.DISPUTE_OPENED, EventKind.DISPUTE_UPDATED,
                                                  EventKind.DISPUTE_WON, EventKind.DISPUTE_LOST):
            return await self._on_dispute(ctx, ev)
        if ev.kind in (EventKind.PAYMENT_SUCCEEDED, EventKind.PAYMENT_FAILED):
            return await self._on_payment(ctx, ev)
        if ev.kind in (EventKind.REFUND_SUCCEEDED, EventKind.REFUND_FAILED):
            with self.db.read() as s:
                pending = list(s.execute(select(PaymentRefund.id).join(
                    PaymentIntent, PaymentIntent.id == PaymentRefund.intent_id).where(
                    PaymentIntent.connection_id == ctx.conn.id, PaymentRefund.status.in_(("pending", "unknown")),
                    (PaymentRefund.gateway_ref == ev.refund_ref) | (PaymentIntent.gateway_ref == ev.gateway_ref)
                )).scalars())
            for rid in pending:  # the payload is only a hint: replay the refund's own key to learn its state
                await self.run_refund(rid)
            return f"refunds rechecked: {len(pending)}"
        return f"ignored {ev.raw_type}"

    async def _on_payment(self, ctx: _Ctx, ev: GatewayEvent) -> str:
        with self.db.read() as s:
            # only parked ones (a running workflow resolves its own attempts), and only those with an
            # attempt at this very connection: an event never reaches another vendor's payment
            q = select(PaymentIntent).join(PaymentAttempt, PaymentAttempt.intent_id == PaymentIntent.id).where(
                PaymentIntent.status == "unknown", PaymentAttempt.connection_id == ctx.conn.id)
            if ev.reference:
                q = q.where(PaymentIntent.id == ev.reference)
            elif ev.gateway_ref:
                q = q.where(PaymentAttempt.gateway_ref == ev.gateway_ref)
            else:
                return "ignored: no reference"
            intent = s.execute(q).scalar()
        if intent is None:
            return "no open transaction"
        return str((await self.resolve_parked(intent.id))["status"])

    async def resolve_parked(self, intent_id: str) -> dict[str, Any]:
        """Resolve an intent parked as ``unknown`` (or a stale ``processing`` one) by lookup at the gateway
        of its pinned attempt. Not charged after all: the intent fails (final, nothing charged)."""
        snap = await asyncio.to_thread(self.begin, intent_id)
        if snap["status"] in FINAL or not snap["pinned_attempt"]:
            with self.db.read() as s:
                intent = s.get(PaymentIntent, intent_id)
            assert intent is not None
            return self.view(intent)
        r = await self.resolve(intent_id, int(snap["pinned_attempt"]))
        if r["outcome"] == Outcome.SUCCEEDED:
            return await self.settle(intent_id)
        if r["outcome"] == Outcome.DECLINED:
            return await asyncio.to_thread(self.finish, intent_id, "declined", r.get("decline_code"), r.get("message"))
        if r["outcome"] == Outcome.NOT_EXECUTED:
            return await asyncio.to_thread(self.finish, intent_id, "failed", "not_charged",
                                           "the gateway confirmed it never charged this payment")
        return await asyncio.to_thread(self.finish, intent_id, "unknown", "outcome_unknown", r.get("message"))

    async def _on_dispute(self, ctx: _Ctx, ev: GatewayEvent) -> str:
        d = ev.dispute
        assert d is not None
        state = {EventKind.DISPUTE_WON: "won", EventKind.DISPUTE_LOST: "lost"}.get(ev.kind)
        if state is None:
            state = "under_review" if d.status in ("under_review", "UNDER_REVIEW", "processing") else "needs_response"
        dispute_id, effects = await asyncio.to_thread(self._apply_dispute, ctx, ev, state)
        if not dispute_id:
            return "dispute of no payment charged through this connection: ignored"
        for kind, amount, reason in effects:  # gateway moves follow the ledger (keys committed in the rows)
            with self.db.read() as s:
                disp = s.get(PaymentDispute, dispute_id)
                intent = s.get(PaymentIntent, disp.intent_id) if disp and disp.intent_id else None
            if intent is not None:  # one key per dispute and direction: a second dispute is its own move
                await self.transfer(intent, kind, reason, amount, seq=dispute_id)
        return f"dispute {state}"

    def _apply_dispute(self, ctx: _Ctx, ev: GatewayEvent, state: str) -> tuple[str, list[tuple[str, int, str]]]:
        d = ev.dispute
        assert d is not None
        effects: list[tuple[str, int, str]] = []
        with self.db.session() as s:
            disp = s.execute(select(PaymentDispute).where(PaymentDispute.connection_id == ctx.conn.id,
                                                          PaymentDispute.dispute_ref == d.dispute_ref)).scalar()
            intent = None
            refs = [r for r in (ev.gateway_ref, d.charge_ref) if r]
            if refs:
                intent = s.execute(select(PaymentIntent).where(PaymentIntent.connection_id == ctx.conn.id,
                                                               PaymentIntent.gateway_ref.in_(refs))).scalar()
            if intent is None and ev.reference:
                candidate = s.get(PaymentIntent, ev.reference)
                # only a payment charged through this connection: an event never reaches another's payment
                if candidate is not None and candidate.connection_id == ctx.conn.id:
                    intent = candidate
            if disp is None and intent is None:
                # not a payment charged through this connection (a shared platform account delivers every
                # vendor's events to every endpoint): nothing of it is recorded or shown for this vendor
                return "", effects
            if disp is None:
                disp = PaymentDispute(id=new_id(), vendor_id=ctx.conn.vendor_id, connection_id=ctx.conn.id,
                                      provider=ctx.conn.provider, dispute_ref=d.dispute_ref,
                                      intent_id=intent.id if intent else None, amount_minor=d.amount_minor,
                                      currency=normalize_currency(d.currency), reason=d.reason, status=state,
                                      share={})
                s.add(disp)
                s.flush()
            disp.gateway_status = d.status
            disp.evidence_due_by = d.evidence_due_by or disp.evidence_due_by
            if disp.status not in ("won", "lost"):
                disp.status = state
            if intent is None or intent.status != "succeeded":
                return disp.id, effects
            parties = _parties(intent)
            if not disp.withdrawn and state in ("needs_response", "under_review", "lost", "won"):
                remaining = _remaining(intent)
                share = share_of(min(d.amount_minor, remaining.total), remaining)
                if share.total > 0:
                    hold = s.execute(select(EscrowHold).where(EscrowHold.intent_id == intent.id)).scalar()
                    from_escrow = 0
                    if hold is not None:
                        from_escrow = min(share.vendor, hold.held_minor - hold.released_minor - hold.returned_minor)
                        hold.returned_minor += from_escrow
                        self._hold_status(hold)
                    post_txn(s, intent.vendor_id, L.dispute_withdrawal_txn(
                        f"dispute:{disp.id}:withdrawal", intent.currency, parties, share, from_escrow=from_escrow),
                        intent.id)
                    disp.share = {**share.as_dict(), "fromEscrow": from_escrow}
                    disp.withdrawn = True
                    native_part = share.vendor - from_escrow
                    if intent.native_split and native_part > 0:
                        if intent.transfer_ref and type(ctx.connector).supports_separate_transfers:
                            effects.append(("reversal", native_part, "dispute"))
                        else:  # recorded as owed back by the vendor (no reversal API at this gateway)
                            pass
            if state == "won" and disp.withdrawn and disp.share:
                share = Split.from_dict(disp.share)
                from_escrow = int(disp.share.get("fromEscrow", 0))
                if post_txn(s, intent.vendor_id, L.dispute_reinstatement_txn(
                        f"dispute:{disp.id}:reinstatement", intent.currency, parties, share, to_escrow=from_escrow),
                        intent.id):
                    hold = s.execute(select(EscrowHold).where(EscrowHold.intent_id == intent.id)).scalar()
                    if hold is not None and from_escrow:
                        hold.returned_minor -= from_escrow
                        self._hold_status(hold)
                    native_part = share.vendor - from_escrow
                    if intent.native_split and native_part > 0 and intent.transfer_ref and \
                            type(ctx.connector).supports_separate_transfers:
                        effects.append(("transfer", native_part, "dispute_won"))
                disp.status = "won"
            if state == "lost":
                disp.status = "lost"
            return disp.id, effects

    def find_intent(self, connection_id: str, refs: list[str], reference: str | None) -> str | None:
        """A succeeded intent of this gateway connection by the gateway's ids, or by our reference as the
        gateway echoes it (possibly shortened with ``bounded_key``, e.g. Authorize.net's invoiceNumber)."""
        with self.db.read() as s:
            refs = [r for r in refs if r]
            if refs:
                found = s.execute(select(PaymentIntent.id).where(PaymentIntent.connection_id == connection_id,
                                                                 PaymentIntent.gateway_ref.in_(refs))).scalar()
                if found:
                    return str(found)
            if not reference:
                return None
            own = s.get(PaymentIntent, reference)
            if own is not None:  # only an intent charged through this very connection (tenancy)
                return reference if own.connection_id == connection_id else None
            for iid in s.execute(select(PaymentIntent.id).where(PaymentIntent.connection_id == connection_id,
                                                                PaymentIntent.status == "succeeded")).scalars():
                if bounded_key(iid, len(reference)) == reference:
                    return str(iid)
        return None

    async def record_chargeback(self, connection_id: str, intent_id: str, dispute_ref: str, amount_minor: int,
                                currency: str) -> str:
        """A chargeback found only in the gateway's settled batches (Authorize.net has no dispute API or
        webhook): recorded as a dispute with its withdrawal posting, once per gateway id."""
        ctx = await self._ctx(connection_id)
        with self.db.read() as s:
            intent = s.get(PaymentIntent, intent_id)
        assert intent is not None
        info = DisputeInfo(dispute_ref=dispute_ref, charge_ref=intent.gateway_ref, amount_minor=amount_minor,
                           currency=currency, reason="chargeback", status="chargeback", evidence_due_by=None)
        ev = GatewayEvent(event_id=f"settlement:{dispute_ref}", kind=EventKind.DISPUTE_OPENED, raw_type="chargeback",
                          gateway_ref=intent.gateway_ref, reference=intent.id, amount_minor=amount_minor,
                          currency=currency, dispute=info)
        dispute_id, _ = await asyncio.to_thread(self._apply_dispute, ctx, ev, "needs_response")
        return dispute_id

    def list_disputes(self, vendor_id: str, *, limit: int | None = None, after: str | None = None
                      ) -> list[dict[str, Any]]:
        """Oldest first; ``after`` is the last id of the previous page, ``limit`` None: all of them."""
        with self.db.read() as s:
            q = select(PaymentDispute).where(PaymentDispute.vendor_id == vendor_id)
            if after:
                cursor_row(s, PaymentDispute, after, PaymentDispute.vendor_id == vendor_id)
                q = q.where(PaymentDispute.id > after)
            rows = list(s.execute(q.order_by(PaymentDispute.id).limit(limit)).scalars())
        return [self._dispute_view(d) for d in rows]

    @staticmethod
    def _dispute_view(d: PaymentDispute) -> dict[str, Any]:
        return {"id": d.id, "transactionId": d.intent_id, "gateway": d.provider, "disputeRef": d.dispute_ref,
                "amountMinor": d.amount_minor, "currency": d.currency, "reason": d.reason, "status": d.status,
                "gatewayStatus": d.gateway_status, "share": d.share,
                "evidenceDueBy": d.evidence_due_by.isoformat() if d.evidence_due_by else None,
                "evidenceSubmittedAt": d.evidence_submitted_at.isoformat() if d.evidence_submitted_at else None}

    async def submit_evidence(self, vendor_id: str, dispute_id: str, evidence: DisputeEvidence) -> dict[str, Any]:
        with self.db.read() as s:
            disp = s.get(PaymentDispute, dispute_id)
        if disp is None or disp.vendor_id != vendor_id:
            raise NotFound("dispute not found", code="unknown_dispute")
        if disp.status in ("won", "lost"):
            raise Conflict(f"the dispute is closed ({disp.status})", code="dispute_closed")
        if disp.evidence_due_by is not None and utcnow() > disp.evidence_due_by:
            raise Conflict("the evidence deadline has passed", code="evidence_deadline_passed")
        ctx = await self._ctx(disp.connection_id)
        result = await ctx.connector.submit_dispute_evidence(disp.dispute_ref, evidence)
        if result.outcome is not Outcome.SUCCEEDED:
            raise Conflict(f"the gateway did not accept the evidence: {result.message}", code="evidence_rejected")
        with self.db.session() as s:
            row = s.get(PaymentDispute, dispute_id)
            assert row is not None
            row.evidence = {k: (v.isoformat() if hasattr(v, "isoformat") else v) for k, v in asdict(evidence).items()}
            row.evidence_submitted_at = utcnow()
            if evidence.submit:
                row.status = "under_review"
            return self._dispute_view(row)

    # -- recovery sweep -----------------------------------------------------------------------------
    async def sweep(self, *, stale_after: timedelta = timedelta(seconds=30)) -> dict[str, int]:
        """Resolve parked unknown payments, replay pending refunds and transfers with their own keys,
        release escrow whose condition is met, and start transactions left without a workflow."""
        cutoff = utcnow() - stale_after
        with self.db.read() as s:
            unknown = list(s.execute(select(PaymentIntent.id).where(PaymentIntent.status == "unknown")).scalars())
            stale = list(s.execute(select(PaymentIntent.id).where(
                PaymentIntent.status.in_(("created", "processing")), PaymentIntent.updated_at < cutoff)).scalars())
            refunds = list(s.execute(select(PaymentRefund.id).where(
                PaymentRefund.status.in_(("pending", "unknown")), PaymentRefund.created_at < cutoff)).scalars())
            transfers = list(s.execute(select(PaymentTransfer.id).where(
                PaymentTransfer.status.in_(("pending", "unknown")), PaymentTransfer.created_at < cutoff)).scalars())
        counts = {"unknown": 0, "stale": len(stale), "refunds": 0, "transfers": 0, "released": 0}
        for iid in unknown:
            counts["unknown"] += (await self.resolve_parked(iid))["status"] != "unknown"
        for rid in refunds:
            counts["refunds"] += (await self.run_refund(rid))["status"] != "unknown"
        for tid in transfers:
            counts["transfers"] += (await self.run_transfer(tid))["status"] != "unknown"
        counts["released"] = len(await self.release_due())
        return counts

    def stale_intents(self, stale_after: timedelta = timedelta(seconds=30)) -> list[str]:
        cutoff = utcnow() - stale_after
        with self.db.read() as s:
            return list(s.execute(select(PaymentIntent.id).where(
                PaymentIntent.status.in_(("created", "processing")), PaymentIntent.updated_at < cutoff)).scalars())


# ------------------------------------------------------------------------------------------- webhooks


async def handle_gateway_event(hub: Any, row: InboxRow) -> str:
    """Inbox handler for the four gateways (signature verified and deduplicated by the intake). An event
    that cannot be understood, or whose connection is gone, fails for good (``Fatal``): retrying it would
    not help, and it must not hold up the rest of the batch."""
    try:
        result: str = await hub.payments.on_event(row)
    except (InvalidInput, NotFound) as exc:
        raise Fatal(f"{row.provider} event {row.event_id}: {exc.message}", provider=row.provider) from exc
    return result


WEBHOOK_HANDLERS: dict[str, Callable[[Any, InboxRow], Awaitable[str]]] = {
    "stripe": handle_gateway_event,
    "square": handle_gateway_event,
    "paypal": handle_gateway_event,
    "authorize-net": handle_gateway_event,
}
