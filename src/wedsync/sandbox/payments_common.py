"""Shared machinery of the four payment gateway emulators: ground truth, webhook target, disputes, after-commit faults.

Each gateway emulator (``stripe``, ``square``, ``paypal``, ``authorize_net``) subclasses
:class:`PaymentEmulator` and serves its own wire format; this module holds what they share:

* **Ground truth** for tests and the fault benchmark: ``GET /_sandbox/{slug}/records/{collection}`` with
  collections ``charges``, ``refunds``, ``transfers``, ``disputes``, ``payouts``, ``events``. Every record is
  ``{"id", "reference", "amount_minor", "currency", "status", "created", "object": <the gateway's own
  object>}`` so a checker can count successful charges per our reference without knowing the gateway.
* **The fault that matters most for money**, "the gateway executed, then the caller lost the answer":
  ``POST /_sandbox/{slug}/mutate`` with ``{"action": "after_commit", "rate": 0.2, "mode": "stall"|"error",
  "stall_seconds": 2, "seed": 1}``. A handler calls :meth:`PaymentEmulator.committed` after it stored the
  charge/refund and before it answers: ``stall`` holds the answer (the client times out), ``error`` answers
  a 5xx in the gateway's format although the work is done. The generic fault middleware (``faults.py``)
  still applies in front (outages, 5xx and timeouts *before* execution, truncated bodies after it).
* **Admin actions** through ``mutate``: ``{"action": "webhook", "url": ..., "secret": ...}`` sets where
  signed webhooks go (the real registration APIs are served too where the spec has them);
  ``{"action": "open_dispute", "charge": <gateway id>, "reason": "fraudulent"}`` opens a dispute and sends
  the webhook; ``{"action": "close_dispute", "dispute": <id>, "outcome": "won"|"lost"}``; ``{"action":
  "payout"}`` settles everything not yet paid out (payout / settled batch) and sends the payout webhook.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import orjson
from starlette.types import ASGIApp, Scope

from wedsync.sandbox.faults import FaultInjector
from wedsync.sandbox.hooks import WebhookDispatcher
from wedsync.sandbox.store import Collection

__all__ = ["COLLECTIONS", "AfterCommitFault", "PaymentEmulator", "SandboxFailure", "card_outcome",
           "processing_fee"]

COLLECTIONS = ("charges", "refunds", "transfers", "disputes", "payouts", "events")


class SandboxFailure(Exception):
    """Raised by :meth:`PaymentEmulator.committed` in ``error`` mode: answer a 5xx although work is done."""

    def __init__(self, status: int = 500) -> None:
        super().__init__(f"injected {status} after commit")
        self.status = status


@dataclass
class AfterCommitFault:
    rate: float = 0.0
    mode: str = "stall"
    stall_seconds: float = 2.0
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.rate <= 1.0:
            raise ValueError("rate must be within [0, 1]")
        if self.mode not in ("stall", "error"):
            raise ValueError("mode must be 'stall' or 'error'")
        if self.stall_seconds < 0:
            raise ValueError("stall_seconds must be >= 0")
        self.rng = random.Random(self.seed)


def card_outcome(token: str) -> tuple[str, str | None]:
    """The sandbox's test cards, shared by the four gateways: ``("ok" | "declined" | "dispute", code)``.

    A token containing ``decline`` is declined (``insufficient`` -> insufficient funds, ``expired`` ->
    expired card, else a generic decline); ``dispute`` succeeds and is disputed at once (as Stripe's
    ``pm_card_createDispute`` is); anything else succeeds.
    """
    low = token.lower()
    if "decline" in low or "insufficient" in low or "expired" in low:
        if "insufficient" in low:
            return "declined", "insufficient_funds"
        if "expired" in low:
            return "declined", "expired_card"
        return "declined", "generic_decline"
    if "dispute" in low:
        return "dispute", None
    return "ok", None


def processing_fee(amount_minor: int, percent_bp: int = 290, fixed_minor: int = 30) -> int:
    """A card processing fee in minor units: ``percent_bp`` basis points (half up) plus a fixed part."""
    return (amount_minor * percent_bp + 5_000) // 10_000 + fixed_minor


class PaymentEmulator:
    """Base of the payment emulators; subclasses set ``slug``/``prefix`` and build ``self.api``."""

    slug: str = ""
    prefix: str = ""

    def __init__(self, *, seed: int = 42) -> None:
        self.seed_value = seed
        self.faults = FaultInjector()
        self.webhooks = WebhookDispatcher(self.faults)
        self.rng = random.Random(seed)
        self.after_commit = AfterCommitFault()
        self.hook_url: str | None = None
        self.hook_secret: str | None = None
        self.records: dict[str, Collection] = {name: Collection(name) for name in COLLECTIONS}
        self._counter = 0
        self.api: ASGIApp = self._build_api()

    # --- Emulator protocol ----------------------------------------------------------------------------------

    @property
    def app(self) -> ASGIApp:
        return self.api

    def error_body(self, status: int, kind: str, detail: str) -> bytes:
        raise NotImplementedError

    def quota_key(self, scope: Scope) -> str | None:
        for key, value in scope.get("headers", ()):
            if key == b"authorization":
                return value.decode("latin-1")[-16:]
        return None

    def collections(self) -> list[str]:
        return list(COLLECTIONS)

    def iter_records(self, collection: str, base_url: str, offset: int, limit: int | None) -> Iterator[bytes]:
        return self.records[collection].iter_blobs(base_url.encode(), offset, limit)

    def reset(self) -> dict[str, Any]:
        for coll in self.records.values():
            coll.clear()
        self.after_commit = AfterCommitFault()
        self.hook_url = self.hook_secret = None
        self.webhooks.clear()
        self.rng = random.Random(self.seed_value)
        self._reset_state()
        return self.counts()

    def seed(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """Payment gateways start empty: charges come from the connector; ``seed`` only resets."""
        if params.get("seed") is not None:
            self.seed_value = int(params["seed"])
        return self.reset()

    def counts(self) -> dict[str, Any]:
        return {name: len(coll) for name, coll in self.records.items()}

    async def mutate(self, params: Mapping[str, Any]) -> dict[str, Any]:
        action = params.get("action")
        if action == "webhook":
            url, secret = params.get("url"), params.get("secret")
            if not isinstance(url, str) or not url.startswith(("http://", "https://")):
                raise ValueError("webhook needs an http(s) url")
            if not isinstance(secret, str) or not secret:
                raise ValueError("webhook needs a secret (the signing key the hub verifies with)")
            self.hook_url, self.hook_secret = url, secret
            return {"webhook": url}
        if action == "after_commit":
            self.after_commit = AfterCommitFault(
                rate=float(params.get("rate", 0.0)), mode=str(params.get("mode", "stall")),
                stall_seconds=float(params.get("stall_seconds", 2.0)), seed=int(params.get("seed", 0)))
            return {"after_commit": {"rate": self.after_commit.rate, "mode": self.after_commit.mode}}
        if action == "open_dispute":
            charge = params.get("charge")
            if not isinstance(charge, str):
                raise ValueError("open_dispute needs the gateway's charge id as 'charge'")
            return await self.open_dispute(charge, str(params.get("reason") or "fraudulent"))
        if action == "close_dispute":
            dispute, outcome = params.get("dispute"), params.get("outcome")
            if not isinstance(dispute, str) or outcome not in ("won", "lost"):
                raise ValueError("close_dispute needs 'dispute' and 'outcome' won|lost")
            return await self.close_dispute(dispute, str(outcome))
        if action == "payout":
            return await self.payout()
        raise ValueError("action must be one of webhook, after_commit, open_dispute, close_dispute, payout")

    # --- for subclasses ---------------------------------------------------------------------------------------

    def _build_api(self) -> ASGIApp:
        raise NotImplementedError

    def _reset_state(self) -> None:
        """Clear the gateway-specific state (idempotency stores, accounts...)."""

    async def open_dispute(self, charge_id: str, reason: str) -> dict[str, Any]:
        raise ValueError(f"{self.slug}: disputes are not emulated")

    async def close_dispute(self, dispute_id: str, outcome: str) -> dict[str, Any]:
        raise ValueError(f"{self.slug}: disputes are not emulated")

    async def payout(self) -> dict[str, Any]:
        raise ValueError(f"{self.slug}: payouts are not emulated")

    def next_id(self, prefix: str, width: int = 24) -> str:
        """A gateway-looking id, unique within this emulator and reproducible for a seed."""
        self._counter += 1
        alphabet = "ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz0123456789"
        tail = "".join(self.rng.choice(alphabet) for _ in range(width - 6))
        return f"{prefix}{self._counter:06d}{tail}"

    def record(self, collection: str, record_id: str, obj: Mapping[str, Any], *, reference: str | None,
               amount_minor: int, currency: str, status: str) -> None:
        """Write (or overwrite) one ground-truth record."""
        self.records[collection].put({
            "id": record_id, "reference": reference, "amount_minor": amount_minor,
            "currency": currency.upper(), "status": status, "created": time.time(), "object": dict(obj),
        })

    def set_status(self, collection: str, record_id: str, status: str, obj: Mapping[str, Any] | None = None) -> None:
        rec = self.records[collection].get(record_id)
        if rec is not None:
            self.records[collection].put({**rec, "status": status, **({"object": dict(obj)} if obj else {})})

    async def committed(self) -> None:
        """Call after the work is stored and before answering: applies the after-commit fault."""
        fault = self.after_commit
        if fault.rate <= 0 or fault.rng.random() >= fault.rate:
            return
        if fault.mode == "stall":
            self.faults.injected["after_commit_stall"] += 1
            await asyncio.sleep(fault.stall_seconds)
            return
        self.faults.injected["after_commit_error"] += 1
        raise SandboxFailure(500)

    def send_event(self, body: Mapping[str, Any], sign: Callable[[bytes, str], Mapping[str, str]]) -> None:
        """Record the event and deliver it signed with ``sign(raw_body, secret)`` (when a target is set)."""
        raw = orjson.dumps(body)
        event_id = str(body.get("id") or body.get("event_id") or body.get("notificationId") or self.next_id("evt_"))
        self.records["events"].put({"id": event_id, "reference": None, "amount_minor": 0, "currency": "",
                                    "status": "sent" if self.hook_url else "not_sent", "created": time.time(),
                                    "object": dict(body)})
        if self.hook_url and self.hook_secret:
            self.webhooks.send(self.hook_url, raw, dict(sign(raw, self.hook_secret)))
