"""The payment gateway interface every gateway connector implements, and the value types it speaks.

PAY-B (payments core) calls only what is defined here; the four gateway modules (``stripe``, ``square``,
``paypal``, ``authorize_net``) implement it against the real wire formats.

How to use it (the contract)
----------------------------
* Build a connector like any other: ``cls(base_url=..., account_key=connection_id, timeout=..., <credential
  fields>, transport=...)`` (``ConnectionService.connector`` does this from the vault).
* Every mutating call takes ``idempotency_key``: a string derived from a record committed *before* the call
  (for a charge: the attempt id). Pass the *same* key again to replay the *same* attempt. Each connector
  turns it into the gateway's own form deterministically (Stripe ``Idempotency-Key``; Square
  ``idempotency_key`` <= 45 chars; PayPal ``PayPal-Request-Id``; Authorize.net ``invoiceNumber`` + the
  ``duplicateWindow`` option, which dedupe on the *reference*), see :func:`bounded_key`.
* ``charge``, ``lookup``, ``capture``, ``refund``, ``transfer``, ``reverse_transfer`` and
  ``submit_dispute_evidence`` do not raise for a business outcome or a transport failure: they return a
  :class:`GatewayResult` whose ``outcome`` is one of the four :class:`Outcome` values (a read they need
  first, e.g. the capture's platform fee before a refund, failing gives NOT_EXECUTED with ``raw_status``
  ``preflight_failed``). They raise only
  ``ReauthRequired`` (credentials rejected: the vendor must reconnect; nothing was charged),
  ``CircuitOpen`` (our breaker refused to send: nothing was charged; fail over),
  ``NotImplementedCapability`` (the gateway cannot do this, e.g. ``transfer`` on Authorize.net) and
  ``InvalidInput`` (our request is invalid before sending, e.g. a fee above the gateway's maximum).
  ``settlements`` and ``onboard`` are reads/setup steps: they raise the connector errors of
  ``connectors/http.py`` (``Retriable``, ``RateLimited``, ``Fatal``...) for the caller's retry policy.
* Outcome rules (ARCHITECTURE rules 3-4):

  ================  ==========================================================================  =============
  outcome           when                                                                        caller does
  ================  ==========================================================================  =============
  NOT_EXECUTED      validation error before execution; a 4xx the gateway documents as not        fail over /
                    executed (bad request, idempotency conflict, auth); connection refused       fix input
                    before sending; 429 after our retries ran out
  DECLINED          the gateway executed and refused (card declined, insufficient funds)        stop (no
                                                                                                failover)
  SUCCEEDED         the money moved (or was authorized when ``capture=False``)                  record it
  UNKNOWN           timeout / 5xx / dropped connection after the request was sent: maybe        ``lookup``
                    executed                                                                    at the same
                                                                                                gateway
  ================  ==========================================================================  =============

* ``lookup(reference, idempotency_key)`` resolves an UNKNOWN at the same gateway; it returns SUCCEEDED /
  DECLINED if the gateway has the charge, NOT_EXECUTED if it provably has not (then a new attempt may go
  anywhere), or UNKNOWN again if the gateway cannot be asked right now (try later, never elsewhere).
* Refunds with ``reverse_split=True`` also undo the split proportionally at the gateway where it is native
  (Stripe ``reverse_transfer`` + ``refund_application_fee``; Square refunds ``app_fee_money``
  proportionally; PayPal refunds the platform fee share). Where splits live on our ledger (Authorize.net,
  or ``native_split`` False in the charge result) the ledger must reverse them.
* ``parse_event`` normalises a webhook body *after* the route verified its signature
  (``connectors/webhooks.py``); it never trusts anything unsigned.
"""

from __future__ import annotations

import abc
import asyncio
import hashlib
import random
from collections.abc import Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any, ClassVar, Literal

import httpx

from wedsync.connectors.base import Connector
from wedsync.connectors.errors import (
    CircuitOpen,
    ConnectorError,
    OutcomeUnknown,
    RateLimited,
    ReauthRequired,
    Retriable,
)
from wedsync.connectors.http import ProviderClient, RetryPolicy
from wedsync.errors import InvalidInput, NotImplementedCapability

__all__ = [
    "CURRENCY_EXPONENTS",
    "ChargeRequest",
    "DisputeEvidence",
    "DisputeInfo",
    "EventKind",
    "GatewayClient",
    "GatewayConnector",
    "GatewayEvent",
    "GatewayResult",
    "OnboardingStep",
    "Outcome",
    "Sent",
    "SettlementItem",
    "SplitInstruction",
    "bounded_key",
    "currency_exponent",
    "from_decimal",
    "preflight_failed",
    "to_decimal",
]


class Outcome(StrEnum):
    """What happened to one gateway call, as far as the money is concerned."""

    NOT_EXECUTED = "not_executed"
    """Known not charged: safe to retry anywhere (fail over)."""
    DECLINED = "declined"
    """The gateway executed and refused; no money moved; do not fail over (the payer must act)."""
    SUCCEEDED = "succeeded"
    """Executed; the money moved (or was authorized)."""
    UNKNOWN = "unknown"
    """Maybe executed: resolve with ``lookup`` at the same gateway before anything else."""


# ----------------------------------------------------------------------------------------------- money

#: ISO 4217 minor-unit exponents that are not 2 (every other known code has 2).
_EXPONENT_EXCEPTIONS: dict[str, int] = {
    "BIF": 0, "CLP": 0, "DJF": 0, "GNF": 0, "ISK": 0, "JPY": 0, "KMF": 0, "KRW": 0, "PYG": 0, "RWF": 0,
    "UGX": 0, "UYI": 0, "VND": 0, "VUV": 0, "XAF": 0, "XOF": 0, "XPF": 0,
    "BHD": 3, "IQD": 3, "JOD": 3, "KWD": 3, "LYD": 3, "OMR": 3, "TND": 3,
}
#: Currencies the four gateways are configured for in this hub (ISO 4217, upper case) -> exponent.
CURRENCY_EXPONENTS: dict[str, int] = {
    code: _EXPONENT_EXCEPTIONS.get(code, 2)
    for code in (
        "USD", "EUR", "GBP", "CAD", "AUD", "NZD", "CHF", "SEK", "NOK", "DKK", "PLN", "CZK", "HUF", "MXN",
        "BRL", "SGD", "HKD", "INR", "ZAR", "JPY", "KRW", "ISK", "CLP", "VND", "BHD", "KWD", "JOD", "OMR",
    )
}


def currency_exponent(currency: str) -> int:
    """Minor-unit exponent of an ISO 4217 code; ``InvalidInput`` (code ``unknown_currency``) otherwise."""
    code = currency.upper()
    try:
        return CURRENCY_EXPONENTS[code]
    except KeyError:
        raise InvalidInput(f"unknown or unsupported currency {currency!r}", code="unknown_currency") from None


def to_decimal(amount_minor: int, currency: str) -> str:
    """``1050, "USD"`` -> ``"10.50"``; ``500, "JPY"`` -> ``"500"`` (PayPal and Authorize.net amounts)."""
    exp = currency_exponent(currency)
    value = Decimal(amount_minor).scaleb(-exp)
    return f"{value:.{exp}f}"


def from_decimal(value: str | int | float, currency: str) -> int:
    """``"10.50", "USD"`` -> ``1050``; rejects values with more decimals than the currency has."""
    exp = currency_exponent(currency)
    try:
        dec = Decimal(str(value))
    except InvalidOperation as exc:
        raise ValueError(f"not a decimal amount: {value!r}") from exc
    scaled = dec.scaleb(exp)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{value!r} has more decimals than {currency} allows")
    return int(scaled)


def bounded_key(key: str, limit: int, *, prefix: str = "") -> str:
    """A deterministic gateway key of at most ``limit`` characters from our idempotency key.

    Keys that fit are used as they are (readable in the gateway's dashboard); longer ones become
    ``prefix`` + a SHA-256 digest cut to fit, so the same attempt always yields the same key.
    """
    candidate = prefix + key
    if len(candidate) <= limit:
        return candidate
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return (prefix + digest)[:limit]


# ------------------------------------------------------------------------------------------ requests


@dataclass(frozen=True, slots=True)
class SplitInstruction:
    """How the platform takes its share of a charge at the gateway (native split).

    ``destination_account`` is the vendor's account at the gateway (Stripe ``acct_...``, Square: the seller
    whose OAuth token the connector uses, so informational; PayPal ``merchant_id`` of the payee).
    ``application_fee_minor`` is what the platform keeps (platform + affiliate shares; the affiliate is paid
    from the platform's share on our ledger). ``mode`` is Stripe's choice between a destination charge
    (``application_fee_amount`` + ``transfer_data[destination]``) and separate charges and transfers
    (charge with ``transfer_group``, then :meth:`GatewayConnector.transfer`); other gateways ignore it.
    """

    destination_account: str
    application_fee_minor: int
    transfer_group: str | None = None
    mode: Literal["destination", "separate"] = "destination"


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """One charge attempt. ``reference`` is our payment/attempt reference (the gateway stores it:
    Stripe ``metadata[reference]`` + ``description``, Square ``reference_id``, PayPal ``invoice_id`` /
    ``custom_id``, Authorize.net ``invoiceNumber`` (<= 20 chars, derived with :func:`bounded_key`)).

    ``payment_method`` is a gateway token (Stripe ``pm_card_visa``, Square ``cnon:...`` source id,
    PayPal: the payer-approved order is out of scope, so a vaulted ``payment_source`` token id,
    Authorize.net ``opaqueData`` value from Accept.js, or ``"card:<number>:<MMYY>:<cvv>"`` in sandboxes).
    """

    reference: str
    amount_minor: int
    currency: str
    payment_method: str
    description: str | None = None
    customer_email: str | None = None
    split: SplitInstruction | None = None
    capture: bool = True
    metadata: dict[str, str] = field(default_factory=dict)

    def validate(self) -> None:
        """Raise ``InvalidInput`` for what no gateway would accept (checked before anything is sent)."""
        if not self.reference:
            raise InvalidInput("a charge needs a reference", code="missing_reference")
        if isinstance(self.amount_minor, bool) or not isinstance(self.amount_minor, int) or self.amount_minor <= 0:
            raise InvalidInput("amount must be a positive integer of minor units", code="invalid_amount")
        currency_exponent(self.currency)
        if not self.payment_method:
            raise InvalidInput("a charge needs a payment method", code="missing_payment_method")
        if self.split is not None:
            fee = self.split.application_fee_minor
            if isinstance(fee, bool) or not isinstance(fee, int) or fee < 0 or fee > self.amount_minor:
                raise InvalidInput("application fee must be between 0 and the amount", code="invalid_split")
            if not self.split.destination_account:
                raise InvalidInput("a split needs a destination account", code="invalid_split")


@dataclass(frozen=True, slots=True)
class GatewayResult:
    """The classified answer to one gateway call (charge, lookup, refund, transfer, reversal).

    ``gateway_ref`` is the gateway's id of what was created or found (Stripe ``pi_...`` for charges,
    ``re_...`` refunds, ``tr_...`` transfers; Square payment/refund id; PayPal capture id (the order id is in
    ``extra["order_id"]``); Authorize.net ``transId``). ``native_split`` is True when the gateway itself
    took the platform fee / moved the vendor's share; False means the ledger must do it. ``fee_minor`` is
    the gateway's processing fee when it tells us at once (else reconciliation finds it).
    ``extra`` carries gateway specifics (``charge_id``, ``transfer_id``, ``order_id``, ``auth_code``...).
    """

    outcome: Outcome
    gateway_ref: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    decline_code: str | None = None
    message: str | None = None
    native_split: bool = False
    fee_minor: int | None = None
    raw_status: str | None = None
    http_status: int | None = None
    retryable: bool = False
    """NOT_EXECUTED that may succeed if retried at the same gateway later (429, breaker, outage)."""
    extra: dict[str, str] = field(default_factory=dict)

    @property
    def charged(self) -> bool:
        return self.outcome is Outcome.SUCCEEDED


@dataclass(frozen=True, slots=True)
class SettlementItem:
    """One gateway-side money movement for reconciliation, amounts signed from the platform account's view.

    ``kind``: ``charge``, ``refund``, ``dispute``, ``fee`` (application fee or processing fee as its own
    item), ``transfer``, ``transfer_reversal``, ``payout``, ``adjustment``. ``gross_minor`` is the movement,
    ``fee_minor`` the gateway's fee on it, ``net_minor = gross_minor - fee_minor``. ``source_ref`` is the
    charge/payment/transaction id (match it to ``GatewayResult.gateway_ref``), ``reference`` ours when the
    gateway echoes it (Square ``reference_id``, PayPal ``invoice_id``, Authorize.net ``invoiceNumber``).
    """

    gateway_ref: str
    kind: str
    gross_minor: int
    fee_minor: int
    net_minor: int
    currency: str
    occurred_at: datetime
    source_ref: str | None = None
    reference: str | None = None
    payout_ref: str | None = None
    status: str | None = None


@dataclass(frozen=True, slots=True)
class OnboardingStep:
    """What a vendor must do next to connect a gateway.

    ``kind``: ``redirect`` (send the vendor to ``url``: Stripe account link, Square OAuth authorize URL,
    PayPal partner-referral action URL), ``credentials`` (the vendor enters ``fields`` into the vault:
    Authorize.net API login id + transaction key) or ``complete``. ``account_ref`` is the gateway account
    created for the vendor (Stripe ``acct_...``, PayPal ``partner_referral_id``) to store on the connection.
    """

    kind: Literal["redirect", "credentials", "complete"]
    url: str | None = None
    account_ref: str | None = None
    expires_at: datetime | None = None
    fields: tuple[str, ...] = ()
    message: str | None = None


class EventKind(StrEnum):
    PAYMENT_SUCCEEDED = "payment.succeeded"
    PAYMENT_FAILED = "payment.failed"
    REFUND_SUCCEEDED = "refund.succeeded"
    REFUND_FAILED = "refund.failed"
    DISPUTE_OPENED = "dispute.opened"
    DISPUTE_UPDATED = "dispute.updated"
    DISPUTE_WON = "dispute.won"
    DISPUTE_LOST = "dispute.lost"
    PAYOUT_PAID = "payout.paid"
    PAYOUT_FAILED = "payout.failed"
    ACCOUNT_UPDATED = "account.updated"
    OTHER = "other"


@dataclass(frozen=True, slots=True)
class DisputeInfo:
    """A dispute (chargeback) as the gateway reports it. ``status`` is the gateway's own word;
    ``amount_minor`` the disputed amount; ``evidence_due_by`` aware UTC or None when not given."""

    dispute_ref: str
    charge_ref: str | None
    amount_minor: int
    currency: str
    reason: str | None
    status: str
    evidence_due_by: datetime | None


@dataclass(frozen=True, slots=True)
class GatewayEvent:
    """A verified webhook normalised for the payments core.

    ``event_id`` is the gateway's event id (dedup key, same as the inbox's). ``gateway_ref`` is the
    payment/charge/capture/transaction the event concerns (for refunds: the refunded charge; ``refund_ref``
    the refund), ``reference`` ours when the payload carries it. ``dispute`` is set for dispute events,
    ``payout_ref`` for payout events. ``raw_type`` is the gateway's event type.
    """

    event_id: str
    kind: EventKind
    raw_type: str
    gateway_ref: str | None = None
    reference: str | None = None
    amount_minor: int | None = None
    currency: str | None = None
    occurred_at: datetime | None = None
    dispute: DisputeInfo | None = None
    refund_ref: str | None = None
    payout_ref: str | None = None
    account_ref: str | None = None


@dataclass(frozen=True, slots=True)
class DisputeEvidence:
    """Evidence to contest a dispute; each gateway maps the fields it has (texts only, no file uploads)."""

    explanation: str
    service_date: date | None = None
    customer_name: str | None = None
    customer_email: str | None = None
    product_description: str | None = None
    refund_policy: str | None = None
    submit: bool = True
    """Submit now (Stripe ``submit=true``, Square ``submit-evidence``); False only stages the texts."""


# ------------------------------------------------------------------------------------- HTTP for money

_IN_MUTATION: ContextVar[bool] = ContextVar("wedsync_gateway_mutation", default=False)
_SINGLE_ATTEMPT = RetryPolicy(max_attempts=1)
_NEVER_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.ProxyError)


@dataclass(slots=True)
class Sent:
    """What happened to one mutating call after our own replays (same idempotency key each time).

    ``response`` is the last answer (any 2xx or 4xx except 401/403/429: the body tells the outcome) or
    None; ``maybe_executed`` is True once any attempt may have reached the gateway without an answer
    (timeout after sending, dropped connection, 5xx): then a missing answer means UNKNOWN, never
    NOT_EXECUTED.
    """

    response: httpx.Response | None
    maybe_executed: bool = False
    error: ConnectorError | None = None
    attempts: int = 0

    def failure(self, **extra: Any) -> GatewayResult:
        """The classified result when no usable answer came back."""
        err = self.error
        if self.maybe_executed:
            return GatewayResult(Outcome.UNKNOWN, message=str(err) if err else "no answer",
                                 http_status=getattr(err, "http_status", None), raw_status="no_answer",
                                 extra={k: str(v) for k, v in extra.items()})
        raw = "circuit_open" if isinstance(err, CircuitOpen) else (
            "rate_limited" if isinstance(err, RateLimited) else "not_sent")
        return GatewayResult(Outcome.NOT_EXECUTED, message=str(err) if err else "not sent", retryable=True,
                             http_status=getattr(err, "http_status", None), raw_status=raw,
                             extra={k: str(v) for k, v in extra.items()})


def preflight_failed(exc: ConnectorError) -> GatewayResult:
    """The result of a mutation abandoned because a read it needed first failed: nothing was sent."""
    return GatewayResult(Outcome.NOT_EXECUTED, message=f"not sent: a preparatory read failed ({exc})"[:300],
                         raw_status="preflight_failed", http_status=exc.http_status,
                         retryable=isinstance(exc, Retriable | OutcomeUnknown))


class GatewayClient(ProviderClient):
    """A :class:`ProviderClient` for money: in :meth:`mutate`, 4xx answers come back to the connector (their
    bodies carry decline codes and idempotency errors) instead of raising ``Fatal`` (reads raise as usual);
    401/403 still raise ``ReauthRequired`` and 429/5xx/transport errors still map as in ``connectors/http.py``.

    :meth:`mutate` sends one mutating call with its own replay loop (the client's internal retries are
    off: they could end in ``CircuitOpen``/``RateLimited`` after an attempt that may have executed, and
    that fact must not be lost). Replaying is safe because every mutation carries its idempotency key.
    """

    _retry: RetryPolicy

    def __init__(self, provider: str, base_url: str, *, mutation_attempts: int = 2,
                 replay_delay: float = 0.05, **kwargs: Any) -> None:
        kwargs.setdefault("retry", RetryPolicy(max_attempts=3, base=0.1, max_total_wait=5.0))
        super().__init__(provider, base_url, **kwargs)
        self.mutation_attempts = max(1, mutation_attempts)
        self.replay_delay = replay_delay

    @property  # type: ignore[override]
    def retry(self) -> RetryPolicy:
        """Reads use the client's policy; inside :meth:`mutate` (this task only) a single attempt."""
        return _SINGLE_ATTEMPT if _IN_MUTATION.get() else self._retry

    @retry.setter
    def retry(self, policy: RetryPolicy) -> None:
        self._retry = policy

    def _map_status(self, request: httpx.Request, response: httpx.Response,
                    replayable: bool) -> ConnectorError | None:
        status = response.status_code
        if _IN_MUTATION.get() and 400 <= status < 500 and status not in (401, 403, 408, 429):
            return None
        return super()._map_status(request, response, replayable)

    async def mutate(self, method: str, path: str, *, idempotency_key: str, json: Any = None,
                     data: Mapping[str, Any] | None = None, content: bytes | str | None = None,
                     headers: Mapping[str, str] | None = None) -> Sent:
        sent = Sent(None)
        token = _IN_MUTATION.set(True)
        try:
            for attempt in range(1, self.mutation_attempts + 1):
                sent.attempts = attempt
                try:
                    sent.response = await self.request(method, path, json=json, data=data, content=content,
                                                       headers=headers, idempotency_key=idempotency_key)
                    return sent
                except ReauthRequired:
                    raise
                except CircuitOpen as exc:
                    sent.error = exc
                    return sent  # not sent; whatever happened before stays recorded
                except RateLimited as exc:  # a 429 is documented as not executed by all four gateways
                    sent.error = exc
                    if attempt < self.mutation_attempts and exc.retry_after <= 2.0:
                        await asyncio.sleep(exc.retry_after + random.uniform(0, 0.05))
                        continue
                    return sent
                except OutcomeUnknown as exc:
                    sent.error, sent.maybe_executed = exc, True
                except Retriable as exc:
                    sent.error = exc
                    if exc.http_status is not None or not isinstance(exc.__cause__, _NEVER_SENT):
                        sent.maybe_executed = True
                except ConnectorError as exc:  # Fatal from a local protocol error: nothing left the process
                    sent.error = exc
                    return sent
                if attempt < self.mutation_attempts:
                    await asyncio.sleep(self.replay_delay * attempt)
            return sent
        finally:
            _IN_MUTATION.reset(token)


# ------------------------------------------------------------------------------------------ connector


class GatewayConnector(Connector, abc.ABC):
    """A payment gateway. Abstract: concrete subclasses set ``slug`` and the ``Connector`` attributes."""

    supports_native_split: ClassVar[bool] = False
    """The gateway can take the platform fee / pay the vendor's share itself."""
    supports_separate_transfers: ClassVar[bool] = False
    """``transfer``/``reverse_transfer`` exist (Stripe Connect)."""
    max_application_fee_ratio: ClassVar[float] = 1.0
    """Largest fee / amount the gateway accepts in a native split (Square: 0.9)."""
    supports_lookup_by_reference: ClassVar[bool] = True
    currencies: ClassVar[frozenset[str]] = frozenset({"USD"})
    """Currencies this connector will charge in (the gateway account's settlement currencies)."""

    def check_split(self, req: ChargeRequest) -> None:
        """``InvalidInput`` (``split_not_supported`` / ``fee_too_high``) before anything is sent."""
        req.validate()
        if req.currency.upper() not in self.currencies:
            raise InvalidInput(f"{self.slug} is not set up for {req.currency.upper()}",
                               code="currency_not_supported")
        if req.split is None:
            return
        if not self.supports_native_split:
            raise InvalidInput(f"{self.slug} has no native split: split on the ledger",
                               code="split_not_supported")
        if req.split.application_fee_minor > req.amount_minor * self.max_application_fee_ratio:
            raise InvalidInput(
                f"{self.slug} accepts an application fee of at most "
                f"{self.max_application_fee_ratio:.0%} of the amount",
                code="fee_too_high",
            )

    @abc.abstractmethod
    async def charge(self, req: ChargeRequest, idempotency_key: str) -> GatewayResult:
        """Charge (or authorize, ``capture=False``) once; replaying ``idempotency_key`` never charges twice."""

    @abc.abstractmethod
    async def lookup(self, reference: str, idempotency_key: str, *,
                     request: ChargeRequest | None = None) -> GatewayResult:
        """Resolve an UNKNOWN charge of ``reference``/``idempotency_key`` at this gateway (see module doc).

        Pass the original ``request`` whenever you have it: where the gateway cannot be searched reliably
        (Stripe search lags, PayPal has no order search) the connector replays the very same call with the
        same idempotency key, which returns the stored outcome, or executes the attempt exactly once.
        """

    async def capture(self, gateway_ref: str, amount_minor: int | None, idempotency_key: str) -> GatewayResult:
        """Capture an authorization made with ``capture=False``."""
        raise NotImplementedCapability(f"{self.slug}: capture of authorizations is not built")

    @abc.abstractmethod
    async def refund(self, gateway_ref: str, amount_minor: int, currency: str, idempotency_key: str, *,
                     reverse_split: bool) -> GatewayResult:
        """Refund ``amount_minor`` of the charge ``gateway_ref``; ``gateway_ref`` of the result is the refund."""

    async def transfer(self, destination_account: str, amount_minor: int, currency: str, idempotency_key: str,
                       *, transfer_group: str | None = None, source_charge: str | None = None) -> GatewayResult:
        """Move ``amount_minor`` from the platform to a connected account (separate charges and transfers)."""
        raise NotImplementedCapability(f"{self.slug} has no separate transfers: settle splits on the ledger")

    async def reverse_transfer(self, transfer_ref: str, amount_minor: int, idempotency_key: str) -> GatewayResult:
        """Take back ``amount_minor`` of a transfer (refunds, lost disputes)."""
        raise NotImplementedCapability(f"{self.slug} has no separate transfers: settle splits on the ledger")

    @abc.abstractmethod
    async def settlements(self, since: datetime, until: datetime) -> list[SettlementItem]:
        """Every gateway-side money movement created in ``[since, until)`` (aware datetimes)."""

    @abc.abstractmethod
    async def onboard(self, vendor_ref: str, return_url: str, refresh_url: str, *,
                      account_ref: str | None = None) -> OnboardingStep:
        """Start (or continue, with the ``account_ref`` an earlier step returned) connecting the vendor's
        account; ``vendor_ref`` is our vendor id."""

    @abc.abstractmethod
    def parse_event(self, raw_body: bytes, headers: Mapping[str, str]) -> GatewayEvent:
        """Normalise a webhook whose signature the route has already verified."""

    async def submit_dispute_evidence(self, dispute_ref: str, evidence: DisputeEvidence) -> GatewayResult:
        """Send evidence for a dispute; SUCCEEDED when the gateway accepted it."""
        raise NotImplementedCapability(f"{self.slug}: disputes are answered in the gateway's own console")
