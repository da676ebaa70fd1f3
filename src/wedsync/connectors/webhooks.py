"""Inbound webhook signature schemes, one class per provider, and the registry keyed by provider slug.

Rule 5: the route verifies the signature on the *raw* body first, then stores the event (see
``wedsync.services.webhook_inbox``), acknowledges, and processes later. A scheme turns a raw request into a
:class:`VerifiedEvent` (the provider's event id for deduplication, the event type and the record it is
about) or raises:

    wedsync.errors.Unauthorized
    └── SignatureInvalid        signature, token or timestamp wrong (HTTP 401, code ``invalid_signature``)
        └── SignatureMissing    the header or token that should carry it is absent (``missing_signature``)

A body that is correctly signed but cannot be read raises ``wedsync.errors.InvalidInput``.

Schemes whose payload is not signed by the provider (Google Calendar, Microsoft Graph, VSCO Workspace,
Acuity's form fields are signed but carry no event id) only tell the hub *that* something changed: the
processor must re-fetch the record through the API rather than trust the body.

Each scheme has class methods that produce real signatures the way the provider does (``sign`` and friends);
the sandboxes, the tests and ``bench/webhook_intake.py`` use them.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import threading
import time
import uuid
import zlib
from collections.abc import Callable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from wedsync.errors import InvalidInput, NotFound, Unauthorized

__all__ = [
    "MAX_JSON_DEPTH",
    "PAYPAL_CERT_HOSTS",
    "AcuityScheme",
    "AuthorizeNetScheme",
    "CalendlyScheme",
    "GoogleCalendarScheme",
    "JSONTooDeep",
    "MetaScheme",
    "MicrosoftGraphScheme",
    "PayPalScheme",
    "SignatureInvalid",
    "SignatureMissing",
    "SquareScheme",
    "StripeScheme",
    "VerifiedEvent",
    "VscoWorkspaceScheme",
    "WebhookScheme",
    "ZapierScheme",
    "get_scheme",
    "loads_json",
    "register_scheme",
    "scheme_providers",
    "vendor_configured",
]

#: The longest event id the inbox stores (``webhook_inbox.event_id`` is VARCHAR(200)).
MAX_EVENT_ID = 200


class SignatureInvalid(Unauthorized):
    """The request's signature, token or timestamp does not verify."""

    code = "invalid_signature"


class SignatureMissing(SignatureInvalid):
    """The header or query parameter that should carry the signature or token is absent."""

    code = "missing_signature"


@dataclass(frozen=True, slots=True)
class VerifiedEvent:
    """What the hub keeps from a verified request: dedup key, type, and the provider record it concerns."""

    event_id: str
    event_type: str | None
    record_id: str | None


# --------------------------------------------------------------------------------------------- helpers


def _lower(headers: Mapping[str, str]) -> dict[str, str]:
    """Case-insensitive view of the headers (Starlette's ``Headers`` already yields lower-case keys)."""
    return {k.lower(): v for k, v in headers.items()}


def _header(headers: Mapping[str, str], name: str) -> str:
    value = headers.get(name.lower())
    if value is None or not value.strip():
        raise SignatureMissing(f"missing {name} header")
    return value.strip()


def _eq(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("utf-8"), b.encode("utf-8"))


def _hmac_hex(key: str | bytes, msg: bytes, algo: str = "sha256") -> str:
    k = key.encode("utf-8") if isinstance(key, str) else key
    return hmac.new(k, msg, algo).hexdigest()


def _hmac_b64(key: str | bytes, msg: bytes) -> str:
    k = key.encode("utf-8") if isinstance(key, str) else key
    return base64.b64encode(hmac.new(k, msg, hashlib.sha256).digest()).decode("ascii")


def _now(now: float | None) -> float:
    return time.time() if now is None else now


def _body_hash(raw_body: bytes) -> str:
    return hashlib.sha256(raw_body).hexdigest()


def _fit_id(value: str) -> str:
    """Event ids longer than the column are replaced by a stable digest of themselves."""
    if len(value) <= MAX_EVENT_ID:
        return value
    return "sha256:" + hashlib.sha256(value.encode("utf-8")).hexdigest()


def _str_or_none(value: Any) -> str | None:
    if value is None or value == "":
        return None
    return str(value)


#: How deeply a webhook body's JSON may nest. No provider's payload comes near it; a deeper one (``[[[[...``,
#: which any caller can send to the routes that read the body before or without a signature) would exhaust the
#: parser's recursion or that of the code reading the result.
MAX_JSON_DEPTH = 64


class JSONTooDeep(ValueError):
    """A JSON body nests deeper than :data:`MAX_JSON_DEPTH`."""

    def __init__(self) -> None:
        super().__init__(f"JSON nested deeper than {MAX_JSON_DEPTH} levels")


def _nests_deeper(data: Any, limit: int) -> bool:
    todo: list[tuple[Any, int]] = [(data, 1)]
    while todo:
        value, depth = todo.pop()
        children = value.values() if isinstance(value, dict) else value
        if depth > limit:
            return True
        todo.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False


def loads_json(raw: bytes | str) -> Any:
    """``json.loads`` for a body from outside: ``ValueError`` (``UnicodeDecodeError`` included) if it is not JSON
    or :class:`JSONTooDeep` if it nests deeper than :data:`MAX_JSON_DEPTH` (``json.loads`` itself raises
    ``RecursionError``, a 500, on a deep one)."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise JSONTooDeep from None
    # only a body with that many brackets can nest that deep: the common body is not walked
    openers = raw.count(b"[") + raw.count(b"{") if isinstance(raw, bytes) else raw.count("[") + raw.count("{")
    if openers > MAX_JSON_DEPTH and isinstance(data, dict | list) and _nests_deeper(data, MAX_JSON_DEPTH):
        raise JSONTooDeep
    return data


def _json_object(raw_body: bytes) -> dict[str, Any]:
    try:
        data = loads_json(raw_body)
    except JSONTooDeep as exc:
        raise InvalidInput(f"webhook body is {exc}") from None
    except ValueError as exc:
        raise InvalidInput("webhook body is not JSON") from exc
    if not isinstance(data, dict):
        raise InvalidInput("webhook body is not a JSON object")
    return data


def _dig(data: Mapping[str, Any], *path: str) -> Any:
    cur: Any = data
    for key in path:
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(key)
    return cur


def _require_id(value: Any, what: str) -> str:
    if value is None or value == "":
        raise InvalidInput(f"webhook payload has no {what}")
    return _fit_id(str(value))


def _parse_timestamped(header: str, name: str) -> tuple[int, list[str]]:
    """Parse ``t=<unix>,v1=<sig>[,v1=<sig>...]`` (Stripe and Calendly); unknown keys (``v0``) are ignored."""
    timestamp: int | None = None
    sigs: list[str] = []
    for part in header.split(","):
        key, sep, value = part.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            try:
                timestamp = int(value)
            except ValueError as exc:
                raise SignatureInvalid(f"{name}: bad timestamp") from exc
        elif key == "v1":
            sigs.append(value.strip())
    if timestamp is None or not sigs:
        raise SignatureInvalid(f"{name}: no timestamp or no v1 signature")
    return timestamp, sigs


def _check_window(timestamp: float, now: float | None, tolerance: float, name: str) -> None:
    if tolerance and abs(_now(now) - timestamp) > tolerance:
        raise SignatureInvalid(f"{name}: timestamp outside the {tolerance:g} s tolerance")


# ---------------------------------------------------------------------------------------------- base


class WebhookScheme:
    """How one provider authenticates the webhooks it sends; ``verify`` is the only thing the route calls.

    ``secret`` is the per-connection secret the provider signs with (endpoint secret, signature key, app
    secret, channel token, clientState, PayPal webhook id, ...). ``url`` is the public URL the provider
    was told to call (Square signs it); ``query`` the request's query parameters.
    """

    provider: ClassVar[str] = ""
    #: Whether the body is signed by the provider; if not, the processor must re-fetch the record.
    body_signed: ClassVar[bool] = True

    def verify_may_block(self, headers: Mapping[str, str]) -> bool:
        """Whether ``verify`` of this request may block on I/O (the route then runs it in a worker thread);
        every scheme but PayPal's verifies in memory."""
        return False

    def verify(
        self,
        raw_body: bytes,
        headers: Mapping[str, str],
        secret: str,
        *,
        url: str = "",
        query: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> VerifiedEvent:
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"<{type(self).__name__} provider={self.provider!r}>"


# -------------------------------------------------------------------------------------------- Stripe


class StripeScheme(WebhookScheme):
    """``Stripe-Signature: t=<unix>,v1=<hex>[,v1=...]``: HMAC-SHA256(endpoint secret, ``"{t}.{body}"``)."""

    provider = "stripe"
    HEADER = "Stripe-Signature"

    def __init__(self, tolerance: float = 300.0) -> None:
        self.tolerance = tolerance

    def verify(
        self,
        raw_body: bytes,
        headers: Mapping[str, str],
        secret: str,
        *,
        url: str = "",
        query: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> VerifiedEvent:
        h = _lower(headers)
        timestamp, sigs = _parse_timestamped(_header(h, self.HEADER), self.HEADER)
        expected = _hmac_hex(secret, f"{timestamp}.".encode() + raw_body)
        if not any(_eq(expected, s) for s in sigs):
            raise SignatureInvalid("Stripe-Signature does not match the body")
        _check_window(timestamp, now, self.tolerance, self.HEADER)
        data = _json_object(raw_body)
        return VerifiedEvent(
            event_id=_require_id(data.get("id"), "id"),
            event_type=_str_or_none(data.get("type")),
            record_id=_str_or_none(_dig(data, "data", "object", "id")),
        )

    @classmethod
    def signature(cls, raw_body: bytes, secret: str, timestamp: int) -> str:
        return _hmac_hex(secret, f"{timestamp}.".encode() + raw_body)

    @classmethod
    def sign(
        cls, raw_body: bytes, secret: str, *, timestamp: int | None = None, extra_v1: tuple[str, ...] = ()
    ) -> dict[str, str]:
        """Headers as Stripe sends them; ``extra_v1`` prepends other v1 values (a rolled secret)."""
        t = int(time.time()) if timestamp is None else timestamp
        parts = [f"t={t}", *(f"v1={s}" for s in extra_v1), f"v1={cls.signature(raw_body, secret, t)}"]
        return {cls.HEADER: ",".join(parts)}


# -------------------------------------------------------------------------------------------- Square


class SquareScheme(WebhookScheme):
    """``x-square-hmacsha256-signature``: base64 HMAC-SHA256(signature key, notification URL + body).

    ``url`` must be the notification URL exactly as registered with Square (the public one, not the one the
    hub sees behind a proxy). Square has no replay window: deduplicate on ``event_id``.
    """

    provider = "square"
    HEADER = "x-square-hmacsha256-signature"

    def verify(
        self,
        raw_body: bytes,
        headers: Mapping[str, str],
        secret: str,
        *,
        url: str = "",
        query: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> VerifiedEvent:
        h = _lower(headers)
        given = _header(h, self.HEADER)
        if not url:
            raise SignatureInvalid("Square signatures need the notification URL")
        if not _eq(_hmac_b64(secret, url.encode("utf-8") + raw_body), given):
            raise SignatureInvalid("Square signature does not match the URL and body")
        data = _json_object(raw_body)
        return VerifiedEvent(
            event_id=_require_id(data.get("event_id"), "event_id"),
            event_type=_str_or_none(data.get("type")),
            record_id=_str_or_none(_dig(data, "data", "id")),
        )

    @classmethod
    def sign(cls, raw_body: bytes, secret: str, *, url: str) -> dict[str, str]:
        return {cls.HEADER: _hmac_b64(secret, url.encode("utf-8") + raw_body)}


# -------------------------------------------------------------------------------------------- PayPal

#: Hosts the hub may fetch a PayPal signing certificate from (a host or any subdomain of it).
PAYPAL_CERT_HOSTS: tuple[str, ...] = ("paypal.com", "paypalobjects.com")
PAYPAL_CERT_PATH_PREFIX = "/v1/notifications/certs/"

CertLoader = Callable[[str], bytes]


def paypal_cert_url_allowed(cert_url: str, hosts: tuple[str, ...] = PAYPAL_CERT_HOSTS) -> bool:
    """True if ``cert_url`` is an https URL on one of PayPal's domains (no credentials, default port)."""
    try:
        parts = urlsplit(cert_url)
        port = parts.port
    except ValueError:
        return False
    host = (parts.hostname or "").lower().rstrip(".")
    if parts.scheme != "https" or parts.username or parts.password or port not in (None, 443):
        return False
    return any(host == allowed or host.endswith("." + allowed) for allowed in hosts)


def cert_url_under_prefix(cert_url: str, prefix: str) -> bool:
    """True if ``cert_url`` lies under the operator-trusted ``prefix``: same scheme, host and port, no user
    info, query or fragment, no dot segments or escapes in the path, and the path below the prefix's."""
    try:
        u, p = urlsplit(cert_url), urlsplit(prefix)
        same = (u.scheme, (u.hostname or "").lower(), u.port) == (p.scheme, (p.hostname or "").lower(), p.port)
    except ValueError:
        return False
    if not same or u.scheme not in ("http", "https") or not p.hostname or u.username or u.password:
        return False
    if u.query or u.fragment or "%" in u.path or "\\" in u.path:
        return False
    if any(seg in (".", "..") for seg in u.path.split("/")):
        return False
    base = p.path if p.path.endswith("/") else p.path + "/"
    return u.path.startswith(base) and len(u.path) > len(base)


def operator_paypal_cert_prefixes() -> tuple[str, ...]:
    """The extra certificate URL prefixes of the running hub (``WEDSYNC_PAYPAL_CERT_URL_PREFIXES``), honoured
    only when the deployment also allows private URLs (sandbox and test set-ups); else none."""
    from wedsync import bootstrap

    settings = getattr(bootstrap._hub, "settings", None)
    if settings is None or not getattr(settings, "allow_private_urls", False):
        return ()
    raw = str(getattr(settings, "paypal_cert_url_prefixes", "") or "")
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def fetch_paypal_cert(cert_url: str) -> bytes:
    """Default certificate loader: GET over verified TLS. Callers cache (``PayPalScheme`` does)."""
    import httpx

    resp = httpx.get(cert_url, timeout=10.0, follow_redirects=False)
    resp.raise_for_status()
    return resp.content


class PayPalScheme(WebhookScheme):
    """PayPal: RSA-SHA256 (``SHA256withRSA``) over ``transmission_id|transmission_time|webhook_id|crc32``.

    ``secret`` is the PayPal webhook id of the connection's subscription. The certificate comes from
    ``PAYPAL-CERT-URL``, which must be on PayPal's domains (:data:`PAYPAL_CERT_HOSTS`) before anything is
    fetched; ``cert_loader`` does the fetching (it blocks: ``verify_may_block`` says when, and the route then
    calls ``verify`` in a worker thread). Loaded certificates are cached by URL; requests that need the same
    URL while it is being fetched wait for that one fetch; a URL that could not be loaded is refused without
    fetching it again for ``FAILED_CERT_TTL`` seconds. The transmission time must be within ``tolerance``
    seconds, checked before anything is fetched.
    """

    provider = "paypal"
    ALGO = "SHA256withRSA"
    #: How long a certificate URL that could not be loaded is refused without another fetch.
    FAILED_CERT_TTL = 60.0

    def __init__(
        self,
        cert_loader: CertLoader | None = None,
        *,
        tolerance: float = 300.0,
        allowed_hosts: tuple[str, ...] = PAYPAL_CERT_HOSTS,
        extra_prefixes: Callable[[], tuple[str, ...]] | None = None,
    ) -> None:
        self.cert_loader: CertLoader = cert_loader or fetch_paypal_cert
        self.tolerance = tolerance
        self.allowed_hosts = allowed_hosts
        self.extra_prefixes = extra_prefixes or (lambda: ())
        self._certs: dict[str, Any] = {}
        self._failed: dict[str, float] = {}  # URL -> time.monotonic() until which it is refused unfetched
        self._loading: dict[str, Future[Any]] = {}  # URL -> the fetch in progress, which later requests await
        self._lock = threading.Lock()

    def verify_may_block(self, headers: Mapping[str, str]) -> bool:
        """True when the request names an allowed certificate URL that is neither loaded nor recently failed:
        ``verify`` would fetch it (or wait for the fetch in progress)."""
        cert_url = _lower(headers).get("paypal-cert-url", "").strip()
        return (bool(cert_url) and cert_url not in self._certs
                and self._failed.get(cert_url, 0.0) <= time.monotonic() and self._allowed(cert_url))

    def _allowed(self, cert_url: str) -> bool:
        return paypal_cert_url_allowed(cert_url, self.allowed_hosts) or any(
            cert_url_under_prefix(cert_url, prefix) for prefix in self.extra_prefixes())

    def _certificate(self, cert_url: str) -> Any:
        if not self._allowed(cert_url):
            raise SignatureInvalid("PAYPAL-CERT-URL is not on a PayPal domain")
        with self._lock:
            cert = self._certs.get(cert_url)
            if cert is not None:
                return cert
            if self._failed.get(cert_url, 0.0) > time.monotonic():
                raise SignatureInvalid("PayPal certificate could not be loaded (recently failed)")
            loading = self._loading.get(cert_url)
            fetch = loading is None
            if loading is None:
                loading = self._loading[cert_url] = Future()
        if not fetch:
            try:
                return loading.result()
            except SignatureInvalid as exc:
                raise SignatureInvalid(exc.message) from None
        try:
            cert = self._load(cert_url)
        except BaseException as exc:  # whatever ends the fetch, the requests waiting for it are answered
            with self._lock:
                del self._loading[cert_url]
                if isinstance(exc, SignatureInvalid):
                    now = time.monotonic()
                    if len(self._failed) > 1024:
                        self._failed = {u: t for u, t in self._failed.items() if t > now}
                    self._failed[cert_url] = now + self.FAILED_CERT_TTL
            loading.set_exception(exc)
            raise
        with self._lock:
            del self._loading[cert_url]
            if len(self._certs) > 64:
                self._certs.clear()
            self._certs[cert_url] = cert
        loading.set_result(cert)
        return cert

    def _load(self, cert_url: str) -> Any:
        from cryptography import x509

        try:
            return x509.load_pem_x509_certificate(self.cert_loader(cert_url))
        except SignatureInvalid:
            raise
        except Exception as exc:
            raise SignatureInvalid("PayPal certificate could not be loaded") from exc

    @staticmethod
    def message(transmission_id: str, transmission_time: str, webhook_id: str, raw_body: bytes) -> bytes:
        crc = zlib.crc32(raw_body) & 0xFFFFFFFF
        return f"{transmission_id}|{transmission_time}|{webhook_id}|{crc}".encode()

    def verify(
        self,
        raw_body: bytes,
        headers: Mapping[str, str],
        secret: str,
        *,
        url: str = "",
        query: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> VerifiedEvent:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        h = _lower(headers)
        transmission_id = _header(h, "PAYPAL-TRANSMISSION-ID")
        transmission_time = _header(h, "PAYPAL-TRANSMISSION-TIME")
        sig_b64 = _header(h, "PAYPAL-TRANSMISSION-SIG")
        cert_url = _header(h, "PAYPAL-CERT-URL")
        algo = h.get("paypal-auth-algo", self.ALGO).strip()
        if algo != self.ALGO:
            raise SignatureInvalid(f"unsupported PAYPAL-AUTH-ALGO {algo!r}")
        try:
            sent = datetime.fromisoformat(transmission_time)
        except ValueError as exc:
            raise SignatureInvalid("bad PAYPAL-TRANSMISSION-TIME") from exc
        if sent.tzinfo is None:
            sent = sent.replace(tzinfo=UTC)
        try:
            signature = base64.b64decode(sig_b64, validate=True)
        except ValueError as exc:
            raise SignatureInvalid("PAYPAL-TRANSMISSION-SIG is not base64") from exc
        _check_window(sent.timestamp(), now, self.tolerance, "PAYPAL-TRANSMISSION-TIME")  # before any fetch
        cert = self._certificate(cert_url)
        moment = datetime.fromtimestamp(_now(now), UTC)
        if not (cert.not_valid_before_utc <= moment <= cert.not_valid_after_utc):
            raise SignatureInvalid("PayPal certificate is not valid now")
        key = cert.public_key()
        if not isinstance(key, rsa.RSAPublicKey):
            raise SignatureInvalid("PayPal certificate does not hold an RSA key")
        msg = self.message(transmission_id, transmission_time, secret, raw_body)
        try:
            key.verify(signature, msg, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature as exc:
            raise SignatureInvalid("PayPal signature does not verify") from exc
        data = _json_object(raw_body)
        return VerifiedEvent(
            event_id=_require_id(data.get("id"), "id"),
            event_type=_str_or_none(data.get("event_type")),
            record_id=_str_or_none(_dig(data, "resource", "id")),
        )

    @classmethod
    def sign(
        cls,
        raw_body: bytes,
        *,
        webhook_id: str,
        private_key_pem: bytes,
        cert_url: str,
        transmission_id: str | None = None,
        transmission_time: datetime | None = None,
    ) -> dict[str, str]:
        """Headers as PayPal sends them, signed with ``private_key_pem`` (the sandbox's key pair)."""
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import padding, rsa

        key = serialization.load_pem_private_key(private_key_pem, password=None)
        if not isinstance(key, rsa.RSAPrivateKey):
            raise TypeError("PayPal signatures need an RSA private key")
        tid = transmission_id or str(uuid.uuid4())
        when = (transmission_time or datetime.now(UTC)).astimezone(UTC)
        ttime = when.strftime("%Y-%m-%dT%H:%M:%SZ")
        sig = key.sign(cls.message(tid, ttime, webhook_id, raw_body), padding.PKCS1v15(), hashes.SHA256())
        return {
            "PAYPAL-TRANSMISSION-ID": tid,
            "PAYPAL-TRANSMISSION-TIME": ttime,
            "PAYPAL-TRANSMISSION-SIG": base64.b64encode(sig).decode("ascii"),
            "PAYPAL-CERT-URL": cert_url,
            "PAYPAL-AUTH-ALGO": cls.ALGO,
        }


# ------------------------------------------------------------------------------------- Authorize.net


class AuthorizeNetScheme(WebhookScheme):
    """``X-ANET-Signature: sha512=<HEX>``: HMAC-SHA512(signature key, body).

    The signature key is used exactly as the merchant interface shows it (a hex string, as text); the
    digest is compared case-insensitively because Authorize.net sends it upper case.
    """

    provider = "authorize-net"
    HEADER = "X-ANET-Signature"

    def verify(
        self,
        raw_body: bytes,
        headers: Mapping[str, str],
        secret: str,
        *,
        url: str = "",
        query: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> VerifiedEvent:
        h = _lower(headers)
        given = _header(h, self.HEADER)
        prefix, sep, digest = given.partition("=")
        if not sep or prefix.strip().lower() != "sha512":
            raise SignatureInvalid("X-ANET-Signature is not sha512=<hex>")
        if not _eq(_hmac_hex(secret, raw_body, "sha512"), digest.strip().lower()):
            raise SignatureInvalid("X-ANET-Signature does not match the body")
        data = _json_object(raw_body)
        return VerifiedEvent(
            event_id=_require_id(data.get("notificationId"), "notificationId"),
            event_type=_str_or_none(data.get("eventType")),
            record_id=_str_or_none(_dig(data, "payload", "id")),
        )

    @classmethod
    def sign(cls, raw_body: bytes, secret: str) -> dict[str, str]:
        return {cls.HEADER: "sha512=" + _hmac_hex(secret, raw_body, "sha512").upper()}


# ---------------------------------------------------------------------------------------------- Meta


class MetaScheme(WebhookScheme):
    """Instagram and Facebook: ``X-Hub-Signature-256: sha256=<hex>`` = HMAC-SHA256(app secret, body).

    Meta's notifications carry no event id: the id is a digest of the ``entry`` list (object ids, times and
    changes), which is what a redelivery repeats.
    """

    provider = "meta"
    HEADER = "X-Hub-Signature-256"

    def verify(
        self,
        raw_body: bytes,
        headers: Mapping[str, str],
        secret: str,
        *,
        url: str = "",
        query: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> VerifiedEvent:
        h = _lower(headers)
        given = _header(h, self.HEADER)
        prefix, sep, digest = given.partition("=")
        if not sep or prefix != "sha256":
            raise SignatureInvalid("X-Hub-Signature-256 is not sha256=<hex>")
        if not _eq(_hmac_hex(secret, raw_body), digest.strip().lower()):
            raise SignatureInvalid("X-Hub-Signature-256 does not match the body")
        data = _json_object(raw_body)
        entries = data.get("entry")
        if not isinstance(entries, list) or not entries:
            raise InvalidInput("Meta notification has no entry")
        first = entries[0] if isinstance(entries[0], Mapping) else {}
        event_id = data.get("id")
        if event_id is None:
            canonical = json.dumps(entries, sort_keys=True, separators=(",", ":"))
            event_id = "meta:" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()
        obj = _str_or_none(data.get("object"))
        field = _dig(first, "changes")
        field_name = (
            field[0].get("field") if isinstance(field, list) and field and isinstance(field[0], Mapping) else None
        )
        event_type = f"{obj}.{field_name}" if obj and field_name else obj
        return VerifiedEvent(
            event_id=_fit_id(str(event_id)), event_type=event_type, record_id=_str_or_none(first.get("id"))
        )

    @staticmethod
    def handshake(query: Mapping[str, str], verify_token: str) -> str:
        """The subscription check (``GET ?hub.mode=subscribe&hub.verify_token=..&hub.challenge=..``).

        Returns the challenge to echo back as the plain-text body; raises if the token is not ours.
        """
        if query.get("hub.mode") != "subscribe":
            raise SignatureInvalid("hub.mode is not subscribe")
        token = query.get("hub.verify_token")
        if token is None:
            raise SignatureMissing("missing hub.verify_token")
        if not _eq(token, verify_token):
            raise SignatureInvalid("hub.verify_token does not match")
        challenge = query.get("hub.challenge")
        if not challenge:
            raise InvalidInput("missing hub.challenge")
        return challenge

    @classmethod
    def sign(cls, raw_body: bytes, secret: str) -> dict[str, str]:
        return {cls.HEADER: "sha256=" + _hmac_hex(secret, raw_body)}


# ------------------------------------------------------------------------------------------ Calendly


class CalendlyScheme(WebhookScheme):
    """``Calendly-Webhook-Signature: t=<unix>,v1=<hex>``: HMAC-SHA256(signing key, ``"{t}.{body}"``).

    Calendly has no event id: the id is ``"{event}:{payload.uri}"`` (an invitee is created and canceled
    at most once), and the record is the payload's URI.
    """

    provider = "calendly"
    HEADER = "Calendly-Webhook-Signature"

    def __init__(self, tolerance: float = 180.0) -> None:
        self.tolerance = tolerance

    def verify(
        self,
        raw_body: bytes,
        headers: Mapping[str, str],
        secret: str,
        *,
        url: str = "",
        query: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> VerifiedEvent:
        h = _lower(headers)
        timestamp, sigs = _parse_timestamped(_header(h, self.HEADER), self.HEADER)
        expected = _hmac_hex(secret, f"{timestamp}.".encode() + raw_body)
        if not any(_eq(expected, s) for s in sigs):
            raise SignatureInvalid("Calendly-Webhook-Signature does not match the body")
        _check_window(timestamp, now, self.tolerance, self.HEADER)
        data = _json_object(raw_body)
        event = _str_or_none(data.get("event"))
        uri = _str_or_none(_dig(data, "payload", "uri"))
        if uri is None:
            raise InvalidInput("Calendly payload has no uri")
        return VerifiedEvent(event_id=_fit_id(f"{event}:{uri}"), event_type=event, record_id=uri)

    @classmethod
    def sign(cls, raw_body: bytes, secret: str, *, timestamp: int | None = None) -> dict[str, str]:
        t = int(time.time()) if timestamp is None else timestamp
        return {cls.HEADER: f"t={t},v1={_hmac_hex(secret, f'{t}.'.encode() + raw_body)}"}


# -------------------------------------------------------------------------------------------- Acuity


class AcuityScheme(WebhookScheme):
    """``X-Acuity-Signature``: base64 HMAC-SHA256(API key, raw form body ``action=..&id=..&...``).

    Acuity sends no event id, and two reschedules of one appointment have identical bodies, so the id is the
    body digest plus a ``dedup_window``-second time bucket: redeliveries inside the window are dropped, a
    later identical notification is kept (it only triggers a harmless re-fetch).
    """

    provider = "acuity"
    HEADER = "X-Acuity-Signature"

    def __init__(self, dedup_window: float = 300.0) -> None:
        self.dedup_window = dedup_window

    def verify(
        self,
        raw_body: bytes,
        headers: Mapping[str, str],
        secret: str,
        *,
        url: str = "",
        query: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> VerifiedEvent:
        h = _lower(headers)
        given = _header(h, self.HEADER)
        if not _eq(_hmac_b64(secret, raw_body), given):
            raise SignatureInvalid("X-Acuity-Signature does not match the body")
        try:
            fields = dict(parse_qsl(raw_body.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError as exc:
            raise InvalidInput("Acuity body is not form-encoded text") from exc
        bucket = int(_now(now) // self.dedup_window) if self.dedup_window else 0
        return VerifiedEvent(
            event_id=f"acuity:{_body_hash(raw_body)[:48]}:{bucket}",
            event_type=_str_or_none(fields.get("action")),
            record_id=_str_or_none(fields.get("id")),
        )

    @classmethod
    def sign(cls, raw_body: bytes, secret: str) -> dict[str, str]:
        return {cls.HEADER: _hmac_b64(secret, raw_body)}


# ----------------------------------------------------------------------------------- Google Calendar


class GoogleCalendarScheme(WebhookScheme):
    """Push notifications: no signature; ``X-Goog-Channel-Token`` must be the token we set on the channel.

    The id is ``"{channel id}:{message number}"`` (the number increases per channel). The body is empty: the
    processor re-fetches with the sync token. An expired channel (``X-Goog-Channel-Expiration``) is refused.
    """

    provider = "google-calendar"
    body_signed = False

    def verify(
        self,
        raw_body: bytes,
        headers: Mapping[str, str],
        secret: str,
        *,
        url: str = "",
        query: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> VerifiedEvent:
        h = _lower(headers)
        token = _header(h, "X-Goog-Channel-Token")
        if not _eq(token, secret):
            raise SignatureInvalid("X-Goog-Channel-Token does not match the channel")
        channel_id = _header(h, "X-Goog-Channel-ID")
        number = h.get("x-goog-message-number", "").strip()
        if not number:
            raise InvalidInput("missing X-Goog-Message-Number")
        expiration = h.get("x-goog-channel-expiration")
        if expiration:
            try:
                expires = parsedate_to_datetime(expiration)
            except (TypeError, ValueError) as exc:
                raise InvalidInput("bad X-Goog-Channel-Expiration") from exc
            if expires.tzinfo is None:
                expires = expires.replace(tzinfo=UTC)
            if expires.timestamp() < _now(now):
                raise SignatureInvalid("the notification channel has expired")
        return VerifiedEvent(
            event_id=_fit_id(f"{channel_id}:{number}"),
            event_type=_str_or_none(h.get("x-goog-resource-state")),
            record_id=_str_or_none(h.get("x-goog-resource-id")),
        )

    @classmethod
    def sign(
        cls,
        *,
        channel_id: str,
        token: str,
        message_number: int,
        resource_id: str,
        resource_state: str = "exists",
        resource_uri: str | None = None,
        expiration: datetime | None = None,
    ) -> dict[str, str]:
        """The headers Google sends on a push notification."""
        headers = {
            "X-Goog-Channel-ID": channel_id,
            "X-Goog-Channel-Token": token,
            "X-Goog-Message-Number": str(message_number),
            "X-Goog-Resource-ID": resource_id,
            "X-Goog-Resource-State": resource_state,
        }
        if resource_uri:
            headers["X-Goog-Resource-URI"] = resource_uri
        if expiration is not None:
            headers["X-Goog-Channel-Expiration"] = format_datetime(expiration.astimezone(UTC), usegmt=True)
        return headers


# ----------------------------------------------------------------------------------- Microsoft Graph

_URL_SAFE = re.compile(r"[A-Za-z0-9_-]+")


class MicrosoftGraphScheme(WebhookScheme):
    """Change notifications: no signature; every notification's ``clientState`` must be the one we set.

    On subscription Graph first calls the URL with ``?validationToken=...``: answer it with
    :meth:`validation_response`. The id is a digest of the body plus a ``dedup_window``-second bucket (Graph
    has no notification id and repeats identical bodies for later changes of the same resource).
    """

    provider = "microsoft-graph"
    body_signed = False

    def __init__(self, dedup_window: float = 300.0) -> None:
        self.dedup_window = dedup_window

    @staticmethod
    def validation_response(query: Mapping[str, str]) -> str | None:
        """The token to echo back (HTTP 200, ``text/plain``) if this is the validation handshake."""
        token = query.get("validationToken")
        return token if token else None

    def verify(
        self,
        raw_body: bytes,
        headers: Mapping[str, str],
        secret: str,
        *,
        url: str = "",
        query: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> VerifiedEvent:
        if _URL_SAFE.fullmatch(secret) and secret.encode() not in raw_body:
            # refused before the body is parsed: the hub's clientState (URL-safe characters, which no JSON
            # encoder escapes) would appear in it verbatim
            if b'"clientState"' in raw_body:
                raise SignatureInvalid("clientState does not match the subscription")
            raise SignatureMissing("missing clientState")
        data = _json_object(raw_body)
        notes = data.get("value")
        if not isinstance(notes, list) or not notes or not all(isinstance(n, Mapping) for n in notes):
            raise InvalidInput("Graph notification has no value list")
        states = [n.get("clientState") for n in notes]
        if all(s is None for s in states):
            raise SignatureMissing("missing clientState")
        if not all(isinstance(s, str) and _eq(s, secret) for s in states):
            raise SignatureInvalid("clientState does not match the subscription")
        first = notes[0]
        bucket = int(_now(now) // self.dedup_window) if self.dedup_window else 0
        return VerifiedEvent(
            event_id=f"graph:{_body_hash(raw_body)[:48]}:{bucket}",
            event_type=_str_or_none(first.get("changeType") or first.get("lifecycleEvent")),
            record_id=_str_or_none(_dig(first, "resourceData", "id") or first.get("resource")),
        )

    @classmethod
    def sign(cls, notifications: list[dict[str, Any]], client_state: str) -> bytes:
        """A notification body as Graph posts it, with ``clientState`` set on each notification."""
        return json.dumps({"value": [{**n, "clientState": client_state} for n in notifications]}).encode()


# ------------------------------------------------------------------------------------ VSCO Workspace


_ULID = re.compile(r"[0-7][0-9a-hjkmnp-tv-z]{25}")


class VscoWorkspaceScheme(WebhookScheme):
    """REST hooks: unsigned, body ``{"targetId": ...}`` only. We authenticate with a per-connection secret
    ``token`` query parameter that we put in the hook URL (:meth:`hook_url`); the processor re-fetches the
    record with the API key. The id is the body digest (hooks fire once per created entity); the event
    type comes from the ``event`` query parameter we also put in the URL.
    """

    provider = "vsco-workspace"
    body_signed = False

    def verify(
        self,
        raw_body: bytes,
        headers: Mapping[str, str],
        secret: str,
        *,
        url: str = "",
        query: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> VerifiedEvent:
        q = query or {}
        token = q.get("token")
        if not token:
            raise SignatureMissing("missing token query parameter")
        if not _eq(token, secret):
            raise SignatureInvalid("token does not match the connection")
        data = _json_object(raw_body)
        raw_target = data.get("targetId")
        if raw_target is None or raw_target == "":
            raise InvalidInput("VSCO Workspace hook has no targetId", code="bad_payload")
        # the spec's entity ids are lowercase ULIDs: anything else (a number, an object, '../job/<id>') would
        # re-fetch something the hook did not name
        target = raw_target.strip().lower() if isinstance(raw_target, str) else ""
        if not _ULID.fullmatch(target):
            raise InvalidInput(f"VSCO Workspace hook targetId {str(raw_target)[:60]!r} is not an entity id (a ULID)",
                               code="bad_payload")
        return VerifiedEvent(
            event_id=f"vsco:{_body_hash(raw_body)}",
            event_type=_str_or_none(q.get("event") or data.get("event")),
            record_id=target,
        )

    @staticmethod
    def hook_url(base_url: str, secret: str, *, event: str | None = None) -> str:
        """The URL to register with ``POST /rest-hook`` for this connection."""
        params = {"token": secret, **({"event": event} if event else {})}
        sep = "&" if urlsplit(base_url).query else "?"
        return f"{base_url}{sep}{urlencode(params)}"

    @classmethod
    def sign(cls, secret: str, *, event: str | None = None) -> dict[str, str]:
        """The query parameters a delivery to :meth:`hook_url` carries."""
        return {"token": secret, **({"event": event} if event else {})}


# ------------------------------------------------------------------------------------------- Zapier


def _loose_key(key: str) -> str:
    """A hook field's name as ``channels.zapier`` matches it: case-folded, punctuation runs as one ``_``."""
    return re.sub(r"[^0-9a-z]+", "_", key.strip().casefold()).strip("_")


class ZapierScheme(WebhookScheme):
    """Our own scheme for Zapier-style inbound hooks (HoneyBook, 17hats, Studio Ninja, Iris Works, ...).

    Either ``X-WedSync-Signature: sha256=<hex HMAC-SHA256(connection secret, body)>`` or, because Zapier's
    webhook action cannot compute an HMAC, a ``token`` query parameter equal to the connection secret. A
    present but wrong signature fails even if a token is also given. The body is JSON or form-encoded; the
    id is its ``id``/``event_id`` field, else the body digest.
    """

    provider = "zapier"
    HEADER = "X-WedSync-Signature"

    def verify(
        self,
        raw_body: bytes,
        headers: Mapping[str, str],
        secret: str,
        *,
        url: str = "",
        query: Mapping[str, str] | None = None,
        now: float | None = None,
    ) -> VerifiedEvent:
        h = _lower(headers)
        given = h.get(self.HEADER.lower())
        if given is not None and given.strip():
            prefix, sep, digest = given.strip().partition("=")
            if not sep or prefix != "sha256":
                raise SignatureInvalid("X-WedSync-Signature is not sha256=<hex>")
            if not _eq(_hmac_hex(secret, raw_body), digest.lower()):
                raise SignatureInvalid("X-WedSync-Signature does not match the body")
        else:
            token = (query or {}).get("token")
            if not token:
                raise SignatureMissing("missing X-WedSync-Signature header or token query parameter")
            if not _eq(token, secret):
                raise SignatureInvalid("token does not match the connection")
        fields = self._fields(raw_body)
        event_id = fields.get("event_id") or fields.get("id")
        return VerifiedEvent(
            event_id=_fit_id(str(event_id)) if event_id not in (None, "") else f"zap:{_body_hash(raw_body)}",
            # an explicit ``event`` first: ``event_type`` is often the project's type ("Wedding"); the intake
            # replaces this with the event the parse reads (``zapier.event_kind``) for the products it knows
            event_type=_str_or_none(fields.get("event") or fields.get("event_type") or fields.get("type")),
            record_id=_str_or_none(fields.get("record_id") or fields.get("id")),
        )

    @staticmethod
    def _fields(raw_body: bytes) -> dict[str, Any]:
        """The hook's fields, keys matched as the parse matches them (``Event ID``, ``event-id`` and ``event_id``
        are one key) and a JSON list of one object read as that object (Zapier's "send as list"): the event id
        was otherwise missed and the body digest deduplicated instead. A body that is neither JSON nor
        form-encoded is ``bad_payload``, as the parse that follows says."""
        text = raw_body.strip().removeprefix(b"\xef\xbb\xbf")
        try:
            if text.startswith(b"["):
                data = loads_json(text)
                fields = data[0] if isinstance(data, list) and len(data) == 1 else None
                if not isinstance(fields, dict):
                    raise InvalidInput("hook body must be a JSON object of fields (one event per request)")
            elif text.startswith(b"{"):
                fields = _json_object(text)
            else:
                fields = dict(parse_qsl(text.decode("utf-8"), keep_blank_values=True))
        except UnicodeDecodeError:
            raise InvalidInput("body is neither JSON nor form-encoded", code="bad_payload") from None
        except JSONTooDeep as exc:
            raise InvalidInput(f"webhook body is {exc}", code="bad_payload") from None
        except ValueError:
            raise InvalidInput("webhook body is not JSON", code="bad_payload") from None
        except InvalidInput as exc:
            raise InvalidInput(exc.message, code="bad_payload") from None
        return {_loose_key(str(k)): v for k, v in reversed(fields.items())}

    @classmethod
    def sign(cls, raw_body: bytes, secret: str) -> dict[str, str]:
        return {cls.HEADER: "sha256=" + _hmac_hex(secret, raw_body)}

    @staticmethod
    def hook_url(base_url: str, secret: str) -> str:
        """The URL to paste into a Zap's webhook action (the token variant)."""
        sep = "&" if urlsplit(base_url).query else "?"
        return f"{base_url}{sep}{urlencode({'token': secret})}"


# ------------------------------------------------------------------------------------------ registry

_REGISTRY: dict[str, WebhookScheme] = {}


def register_scheme(scheme: WebhookScheme, *aliases: str) -> WebhookScheme:
    """Register ``scheme`` under its provider slug and any aliases (replacing an earlier registration)."""
    for slug in (scheme.provider, *aliases):
        _REGISTRY[slug] = scheme
    return scheme


def has_scheme(provider: str) -> bool:
    """Whether the hub accepts webhooks from ``provider`` (a push-only or feed-only channel does not)."""
    return provider in _REGISTRY


def vendor_configured(provider: str) -> bool:
    """Whether the vendor sets up the sender of ``provider``'s webhooks by hand (a Zap, an automation) with the
    hub's own per-connection secret, so the hub must tell the vendor that secret (at connection time, and again
    when it is rotated). Other providers sign with a secret they issued (a credential the vendor gave us) or are
    subscribed by the hub itself."""
    return isinstance(_REGISTRY.get(provider), ZapierScheme)


def get_scheme(provider: str) -> WebhookScheme:
    """The scheme that verifies ``provider``'s webhooks; ``NotFound`` if the hub accepts none from it."""
    try:
        return _REGISTRY[provider]
    except KeyError:
        raise NotFound(f"no webhook scheme for provider {provider!r}", code="unknown_provider") from None


def scheme_providers() -> list[str]:
    """Every slug (and alias) with a registered scheme."""
    return sorted(_REGISTRY)


register_scheme(StripeScheme())
register_scheme(SquareScheme())
register_scheme(PayPalScheme(extra_prefixes=operator_paypal_cert_prefixes))
register_scheme(AuthorizeNetScheme())
register_scheme(MetaScheme(), "instagram", "facebook")
register_scheme(CalendlyScheme())
register_scheme(AcuityScheme())
register_scheme(GoogleCalendarScheme())
register_scheme(MicrosoftGraphScheme())
register_scheme(VscoWorkspaceScheme())
register_scheme(ZapierScheme(), "honeybook", "17hats", "studio-ninja", "iris-works", "dubsado", "pic-time")
