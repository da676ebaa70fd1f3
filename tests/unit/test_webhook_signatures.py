"""Every webhook signature scheme: signatures computed the way each provider documents them pass; tampered
bodies, wrong secrets, missing headers and stale timestamps fail."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import zlib
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from wedsync.connectors.webhooks import (
    AcuityScheme,
    AuthorizeNetScheme,
    CalendlyScheme,
    GoogleCalendarScheme,
    MetaScheme,
    MicrosoftGraphScheme,
    PayPalScheme,
    SignatureInvalid,
    SignatureMissing,
    SquareScheme,
    StripeScheme,
    VerifiedEvent,
    VscoWorkspaceScheme,
    WebhookScheme,
    ZapierScheme,
    get_scheme,
    paypal_cert_url_allowed,
)
from wedsync.errors import InvalidInput, NotFound, Unauthorized

NOW = 1_760_000_000.0


def hmac_hex(key: str, msg: bytes, algo: str = "sha256") -> str:
    return hmac.new(key.encode(), msg, algo).hexdigest()


def hmac_b64(key: str, msg: bytes) -> str:
    return base64.b64encode(hmac.new(key.encode(), msg, hashlib.sha256).digest()).decode()


def test_registry_slugs_and_unknown_provider() -> None:
    for slug in (
        "stripe",
        "square",
        "paypal",
        "authorize-net",
        "calendly",
        "acuity",
        "google-calendar",
        "microsoft-graph",
        "vsco-workspace",
        "zapier",
    ):
        assert get_scheme(slug).provider == slug
    assert get_scheme("instagram") is get_scheme("facebook") is get_scheme("meta")
    with pytest.raises(NotFound):
        get_scheme("myspace")


def test_errors_are_unauthorized_with_codes() -> None:
    assert issubclass(SignatureInvalid, Unauthorized)
    assert issubclass(SignatureMissing, SignatureInvalid)
    assert SignatureInvalid("x").code == "invalid_signature"
    assert SignatureInvalid("x").status == 401


# ------------------------------------------------------------------------------------------- Stripe

STRIPE_SECRET = "whsec_test_5f2b"
STRIPE_BODY = json.dumps(
    {"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {"id": "pi_9", "amount": 1200}}}
).encode()


def stripe_header(body: bytes, secret: str, t: int, *extra: str) -> dict[str, str]:
    sig = hmac_hex(secret, f"{t}.".encode() + body)
    return {"Stripe-Signature": ",".join([f"t={t}", *(f"v1={e}" for e in extra), f"v1={sig}"])}


def test_stripe_valid() -> None:
    ev = StripeScheme().verify(STRIPE_BODY, stripe_header(STRIPE_BODY, STRIPE_SECRET, int(NOW)), STRIPE_SECRET, now=NOW)
    assert ev == VerifiedEvent("evt_1", "payment_intent.succeeded", "pi_9")


def test_stripe_headers_case_insensitive_and_v0_ignored() -> None:
    h = stripe_header(STRIPE_BODY, STRIPE_SECRET, int(NOW))
    value = h["Stripe-Signature"] + ",v0=deadbeef"
    StripeScheme().verify(STRIPE_BODY, {"stripe-signature": value}, STRIPE_SECRET, now=NOW)


def test_stripe_second_v1_matches() -> None:
    h = stripe_header(STRIPE_BODY, STRIPE_SECRET, int(NOW), "0" * 64)
    assert h["Stripe-Signature"].count("v1=") == 2
    assert StripeScheme().verify(STRIPE_BODY, h, STRIPE_SECRET, now=NOW).event_id == "evt_1"


def test_stripe_failures() -> None:
    s = StripeScheme()
    h = stripe_header(STRIPE_BODY, STRIPE_SECRET, int(NOW))
    with pytest.raises(SignatureInvalid):
        s.verify(STRIPE_BODY.replace(b"1200", b"1"), h, STRIPE_SECRET, now=NOW)
    with pytest.raises(SignatureInvalid):
        s.verify(STRIPE_BODY, h, "whsec_other", now=NOW)
    with pytest.raises(SignatureMissing):
        s.verify(STRIPE_BODY, {}, STRIPE_SECRET, now=NOW)
    with pytest.raises(SignatureInvalid, match="tolerance"):
        s.verify(STRIPE_BODY, h, STRIPE_SECRET, now=NOW + 301)
    with pytest.raises(SignatureInvalid):
        s.verify(STRIPE_BODY, {"Stripe-Signature": "garbage"}, STRIPE_SECRET, now=NOW)
    # Within tolerance is fine.
    s.verify(STRIPE_BODY, h, STRIPE_SECRET, now=NOW + 299)


def test_stripe_sign_roundtrip_uses_current_time() -> None:
    h = StripeScheme.sign(STRIPE_BODY, STRIPE_SECRET)
    assert StripeScheme().verify(STRIPE_BODY, h, STRIPE_SECRET).event_id == "evt_1"


# ------------------------------------------------------------------------------------------- Square

SQUARE_KEY = "sq-signature-key"
SQUARE_URL = "https://hub.example.com/webhooks/square/01hconn"
SQUARE_BODY = json.dumps(
    {
        "merchant_id": "M1",
        "type": "payment.updated",
        "event_id": "6a8f5f28",
        "data": {"type": "payment", "id": "KkAkhdMs"},
    }
).encode()


def test_square_valid_and_failures() -> None:
    s = SquareScheme()
    h = {"X-Square-HmacSha256-Signature": hmac_b64(SQUARE_KEY, SQUARE_URL.encode() + SQUARE_BODY)}
    assert s.verify(SQUARE_BODY, h, SQUARE_KEY, url=SQUARE_URL) == VerifiedEvent(
        "6a8f5f28", "payment.updated", "KkAkhdMs"
    )
    assert SquareScheme.sign(SQUARE_BODY, SQUARE_KEY, url=SQUARE_URL) == {
        "x-square-hmacsha256-signature": h["X-Square-HmacSha256-Signature"]
    }
    with pytest.raises(SignatureInvalid):
        s.verify(SQUARE_BODY + b" ", h, SQUARE_KEY, url=SQUARE_URL)
    with pytest.raises(SignatureInvalid):
        s.verify(SQUARE_BODY, h, "other", url=SQUARE_URL)
    with pytest.raises(SignatureInvalid):  # signed for another notification URL
        s.verify(SQUARE_BODY, h, SQUARE_KEY, url=SQUARE_URL + "x")
    with pytest.raises(SignatureMissing):
        s.verify(SQUARE_BODY, {}, SQUARE_KEY, url=SQUARE_URL)


# ------------------------------------------------------------------------------------------- PayPal

WEBHOOK_ID = "1JE4291016473214C"
CERT_URL = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-1d93a270"
PAYPAL_BODY = json.dumps(
    {
        "id": "WH-2WR32451HC0233532-67976317FL4543714",
        "event_type": "PAYMENT.CAPTURE.COMPLETED",
        "resource": {"id": "42311647XV020574X", "status": "COMPLETED"},
    }
).encode()


@pytest.fixture(scope="module")
def paypal_keys() -> tuple[bytes, bytes]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "messageverificationcerts.sandbox.paypal.com")])
    start = datetime.fromtimestamp(NOW, UTC) - timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM)


def paypal_headers(key_pem: bytes, body: bytes, when: datetime, cert_url: str = CERT_URL) -> dict[str, str]:
    """Sign as PayPal documents it, independently of the scheme's own ``sign``."""
    key = serialization.load_pem_private_key(key_pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey)
    tid = "69cd13f0-d67a-11e5-baa3-778b53f4ae55"
    ttime = when.strftime("%Y-%m-%dT%H:%M:%SZ")
    msg = f"{tid}|{ttime}|{WEBHOOK_ID}|{zlib.crc32(body)}".encode()
    sig = key.sign(msg, padding.PKCS1v15(), hashes.SHA256())
    return {
        "PAYPAL-TRANSMISSION-ID": tid,
        "PAYPAL-TRANSMISSION-TIME": ttime,
        "PAYPAL-TRANSMISSION-SIG": base64.b64encode(sig).decode(),
        "PAYPAL-CERT-URL": cert_url,
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
    }


class Loader:
    def __init__(self, pem: bytes) -> None:
        self.pem = pem
        self.calls: list[str] = []

    def __call__(self, url: str) -> bytes:
        self.calls.append(url)
        return self.pem


def test_paypal_valid(paypal_keys: tuple[bytes, bytes]) -> None:
    key_pem, cert_pem = paypal_keys
    loader = Loader(cert_pem)
    s = PayPalScheme(loader)
    when = datetime.fromtimestamp(NOW, UTC)
    h = paypal_headers(key_pem, PAYPAL_BODY, when)
    ev = s.verify(PAYPAL_BODY, h, WEBHOOK_ID, now=NOW + 10)
    assert ev == VerifiedEvent(
        "WH-2WR32451HC0233532-67976317FL4543714", "PAYMENT.CAPTURE.COMPLETED", "42311647XV020574X"
    )
    s.verify(PAYPAL_BODY, h, WEBHOOK_ID, now=NOW + 20)
    assert loader.calls == [CERT_URL]  # cached
    # The scheme's own signer agrees with the documented construction.
    h2 = PayPalScheme.sign(
        PAYPAL_BODY, webhook_id=WEBHOOK_ID, private_key_pem=key_pem, cert_url=CERT_URL, transmission_time=when
    )
    s.verify(PAYPAL_BODY, h2, WEBHOOK_ID, now=NOW)


def test_paypal_failures(paypal_keys: tuple[bytes, bytes]) -> None:
    key_pem, cert_pem = paypal_keys
    s = PayPalScheme(Loader(cert_pem))
    when = datetime.fromtimestamp(NOW, UTC)
    h = paypal_headers(key_pem, PAYPAL_BODY, when)
    with pytest.raises(SignatureInvalid):
        s.verify(PAYPAL_BODY.replace(b"COMPLETED", b"DENIED"), h, WEBHOOK_ID, now=NOW)
    with pytest.raises(SignatureInvalid):  # signed for another webhook id
        s.verify(PAYPAL_BODY, h, "8PT597110X687430LKGECATA", now=NOW)
    with pytest.raises(SignatureInvalid, match="tolerance"):
        s.verify(PAYPAL_BODY, h, WEBHOOK_ID, now=NOW + 3600)
    missing = dict(h)
    del missing["PAYPAL-TRANSMISSION-SIG"]
    with pytest.raises(SignatureMissing):
        s.verify(PAYPAL_BODY, missing, WEBHOOK_ID, now=NOW)
    with pytest.raises(SignatureInvalid, match="PAYPAL-AUTH-ALGO"):
        s.verify(PAYPAL_BODY, {**h, "PAYPAL-AUTH-ALGO": "SHA1withRSA"}, WEBHOOK_ID, now=NOW)
    # Signed by a key that is not the certificate's.
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(SignatureInvalid):
        s.verify(PAYPAL_BODY, paypal_headers(other, PAYPAL_BODY, when), WEBHOOK_ID, now=NOW)
    # Certificate expired at ``now``.
    with pytest.raises(SignatureInvalid, match="certificate"):
        s.verify(
            PAYPAL_BODY,
            paypal_headers(key_pem, PAYPAL_BODY, when + timedelta(days=60)),
            WEBHOOK_ID,
            now=NOW + 60 * 86400,
        )


@pytest.mark.parametrize(
    "url",
    [
        "https://evil.example.com/v1/notifications/certs/CERT-1",
        "http://api.paypal.com/v1/notifications/certs/CERT-1",
        "https://api.paypal.com.evil.example/v1/notifications/certs/CERT-1",
        "https://evilpaypal.com/cert",
        "https://api.paypal.com@evil.example.com/cert",
        "https://api.paypal.com:8443/cert",
        "file:///etc/passwd",
        "https://127.0.0.1/cert",
    ],
)
def test_paypal_cert_url_allow_list_rejects(paypal_keys: tuple[bytes, bytes], url: str) -> None:
    key_pem, cert_pem = paypal_keys
    loader = Loader(cert_pem)
    h = paypal_headers(key_pem, PAYPAL_BODY, datetime.fromtimestamp(NOW, UTC), cert_url=url)
    with pytest.raises(SignatureInvalid, match="PayPal domain"):
        PayPalScheme(loader).verify(PAYPAL_BODY, h, WEBHOOK_ID, now=NOW)
    assert loader.calls == []  # nothing was fetched


def test_paypal_cert_url_allow_list_accepts() -> None:
    assert paypal_cert_url_allowed("https://api.paypal.com/v1/notifications/certs/CERT-1")
    assert paypal_cert_url_allowed(CERT_URL)
    assert paypal_cert_url_allowed("https://paypal.com/v1/notifications/certs/CERT-1")


# ------------------------------------------------------------------------------------ Authorize.net

ANET_KEY = "7A8C3E9F" * 16  # as the merchant interface shows it: 128 upper-case hex characters
ANET_BODY = json.dumps(
    {
        "notificationId": "d0e8e7fe-c3e7-4add-a480-27bc5ce28a97",
        "eventType": "net.authorize.payment.authcapture.created",
        "eventDate": "2026-11-01T10:00:00.0Z",
        "webhookId": "63d6fea2-aa13-4b1d-a204-f5fbc15942b7",
        "payload": {"responseCode": 1, "authAmount": 45.0, "entityName": "transaction", "id": "60020981676"},
    }
).encode()


def test_authorize_net_valid_and_case_insensitive() -> None:
    s = AuthorizeNetScheme()
    digest = hmac_hex(ANET_KEY, ANET_BODY, "sha512")
    for value in ("sha512=" + digest.upper(), "sha512=" + digest):
        ev = s.verify(ANET_BODY, {"X-ANET-Signature": value}, ANET_KEY)
        assert ev == VerifiedEvent(
            "d0e8e7fe-c3e7-4add-a480-27bc5ce28a97", "net.authorize.payment.authcapture.created", "60020981676"
        )
    assert AuthorizeNetScheme.sign(ANET_BODY, ANET_KEY) == {"X-ANET-Signature": "sha512=" + digest.upper()}


def test_authorize_net_failures() -> None:
    s = AuthorizeNetScheme()
    h = AuthorizeNetScheme.sign(ANET_BODY, ANET_KEY)
    with pytest.raises(SignatureInvalid):
        s.verify(ANET_BODY.replace(b"45.0", b"4.5"), h, ANET_KEY)
    with pytest.raises(SignatureInvalid):
        s.verify(ANET_BODY, h, "0" * 128)
    with pytest.raises(SignatureMissing):
        s.verify(ANET_BODY, {}, ANET_KEY)
    with pytest.raises(SignatureInvalid):
        s.verify(ANET_BODY, {"X-ANET-Signature": h["X-ANET-Signature"].replace("sha512", "sha256")}, ANET_KEY)


# --------------------------------------------------------------------------------------------- Meta

META_SECRET = "meta-app-secret"
META_BODY = json.dumps(
    {
        "object": "instagram",
        "entry": [
            {"id": "17841400000000", "time": 1760000000, "changes": [{"field": "comments", "value": {"id": "1790"}}]}
        ],
    }
).encode()


def test_meta_valid_and_stable_id() -> None:
    s = get_scheme("instagram")
    h = {"X-Hub-Signature-256": "sha256=" + hmac_hex(META_SECRET, META_BODY)}
    ev = s.verify(META_BODY, h, META_SECRET)
    assert ev.event_type == "instagram.comments"
    assert ev.record_id == "17841400000000"
    assert ev.event_id.startswith("meta:")
    # A redelivery with different whitespace has the same id; another time is another event.
    pretty = json.dumps(json.loads(META_BODY), indent=2).encode()
    assert s.verify(pretty, MetaScheme.sign(pretty, META_SECRET), META_SECRET).event_id == ev.event_id
    later = META_BODY.replace(b"1760000000", b"1760000001")
    assert s.verify(later, MetaScheme.sign(later, META_SECRET), META_SECRET).event_id != ev.event_id


def test_meta_failures_and_handshake() -> None:
    s = MetaScheme()
    h = MetaScheme.sign(META_BODY, META_SECRET)
    with pytest.raises(SignatureInvalid):
        s.verify(META_BODY.replace(b"comments", b"mentions"), h, META_SECRET)
    with pytest.raises(SignatureInvalid):
        s.verify(META_BODY, h, "other-secret")
    with pytest.raises(SignatureMissing):
        s.verify(META_BODY, {"X-Hub-Signature": "sha1=abc"}, META_SECRET)
    q = {"hub.mode": "subscribe", "hub.verify_token": "vt-123", "hub.challenge": "1158201444"}
    assert MetaScheme.handshake(q, "vt-123") == "1158201444"
    with pytest.raises(SignatureInvalid):
        MetaScheme.handshake(q, "vt-999")
    with pytest.raises(SignatureMissing):
        MetaScheme.handshake({"hub.mode": "subscribe", "hub.challenge": "1"}, "vt-123")


# ----------------------------------------------------------------------------------------- Calendly

CAL_KEY = "calendly-signing-key"
CAL_BODY = json.dumps(
    {
        "event": "invitee.created",
        "created_at": "2026-11-01T10:00:00.000000Z",
        "payload": {
            "uri": "https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2/invitees/AAAA",
            "email": "couple@example.com",
        },
    }
).encode()


def test_calendly_valid_and_failures() -> None:
    s = CalendlyScheme()
    t = int(NOW)
    h = {"Calendly-Webhook-Signature": f"t={t},v1={hmac_hex(CAL_KEY, f'{t}.'.encode() + CAL_BODY)}"}
    ev = s.verify(CAL_BODY, h, CAL_KEY, now=NOW + 5)
    assert ev.event_type == "invitee.created"
    assert ev.record_id == "https://api.calendly.com/scheduled_events/GBGBDCAADAEDCRZ2/invitees/AAAA"
    assert ev.event_id == "invitee.created:" + ev.record_id
    assert CalendlyScheme.sign(CAL_BODY, CAL_KEY, timestamp=t) == h
    with pytest.raises(SignatureInvalid):
        s.verify(CAL_BODY.replace(b"couple", b"other"), h, CAL_KEY, now=NOW)
    with pytest.raises(SignatureInvalid):
        s.verify(CAL_BODY, h, "wrong", now=NOW)
    with pytest.raises(SignatureMissing):
        s.verify(CAL_BODY, {}, CAL_KEY, now=NOW)
    with pytest.raises(SignatureInvalid, match="tolerance"):
        s.verify(CAL_BODY, h, CAL_KEY, now=NOW + 600)


# ------------------------------------------------------------------------------------------- Acuity

ACUITY_KEY = "acuity-api-key-0123"
ACUITY_BODY = urlencode(
    {"action": "appointment.rescheduled", "id": "471154723", "calendarID": "2222", "appointmentTypeID": "33"}
).encode()


def test_acuity_form_body() -> None:
    s = AcuityScheme()
    h = {"X-Acuity-Signature": hmac_b64(ACUITY_KEY, ACUITY_BODY)}
    ev = s.verify(ACUITY_BODY, h, ACUITY_KEY, now=NOW)
    assert ev.event_type == "appointment.rescheduled"
    assert ev.record_id == "471154723"
    # A later identical notification (a second reschedule) is a new event, not a duplicate.
    assert s.verify(ACUITY_BODY, h, ACUITY_KEY, now=NOW + 3600).event_id != ev.event_id
    assert AcuityScheme.sign(ACUITY_BODY, ACUITY_KEY) == h
    with pytest.raises(SignatureInvalid):
        s.verify(ACUITY_BODY.replace(b"471154723", b"471154724"), h, ACUITY_KEY, now=NOW)
    with pytest.raises(SignatureInvalid):
        s.verify(ACUITY_BODY, h, "other", now=NOW)
    with pytest.raises(SignatureMissing):
        s.verify(ACUITY_BODY, {}, ACUITY_KEY, now=NOW)


def test_acuity_same_bucket_same_id() -> None:
    s = AcuityScheme(dedup_window=300)
    h = AcuityScheme.sign(ACUITY_BODY, ACUITY_KEY)
    base = 300 * 5_000_000.0
    assert (
        s.verify(ACUITY_BODY, h, ACUITY_KEY, now=base).event_id
        == s.verify(ACUITY_BODY, h, ACUITY_KEY, now=base + 299).event_id
    )


# ---------------------------------------------------------------------------------- Google Calendar


def test_google_channel_token() -> None:
    s = GoogleCalendarScheme()
    h = {
        "X-Goog-Channel-ID": "chan-01",
        "X-Goog-Channel-Token": "tok-secret",
        "X-Goog-Message-Number": "7",
        "X-Goog-Resource-ID": "ret08u3rv24htgh289g",
        "X-Goog-Resource-State": "exists",
        "X-Goog-Channel-Expiration": "Tue, 19 Nov 2030 01:13:52 GMT",
    }
    assert s.verify(b"", h, "tok-secret", now=NOW) == VerifiedEvent("chan-01:7", "exists", "ret08u3rv24htgh289g")
    with pytest.raises(SignatureInvalid):
        s.verify(b"", h, "tok-other", now=NOW)
    no_token = {k: v for k, v in h.items() if k != "X-Goog-Channel-Token"}
    with pytest.raises(SignatureMissing):
        s.verify(b"", no_token, "tok-secret", now=NOW)
    with pytest.raises(SignatureInvalid, match="expired"):
        s.verify(b"", h, "tok-secret", now=datetime(2031, 1, 1, tzinfo=UTC).timestamp())
    signed = GoogleCalendarScheme.sign(
        channel_id="chan-01",
        token="tok-secret",
        message_number=8,
        resource_id="r1",
        expiration=datetime(2030, 1, 1, tzinfo=UTC),
    )
    assert s.verify(b"", signed, "tok-secret", now=NOW).event_id == "chan-01:8"


# ---------------------------------------------------------------------------------- Microsoft Graph


def test_graph_client_state_and_validation() -> None:
    s = MicrosoftGraphScheme()
    note = {
        "subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
        "changeType": "updated",
        "resource": "me/events/AAMkAGUw",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "id": "AAMkAGUw"},
        "tenantId": "t1",
    }
    body = MicrosoftGraphScheme.sign([note, {**note, "changeType": "deleted"}], "cs-secret")
    ev = s.verify(body, {}, "cs-secret", now=NOW)
    assert ev.event_type == "updated" and ev.record_id == "AAMkAGUw"
    with pytest.raises(SignatureInvalid):
        s.verify(body, {}, "cs-other", now=NOW)
    # One notification in the batch with a wrong clientState spoils the request.
    mixed = json.dumps({"value": [{**note, "clientState": "cs-secret"}, {**note, "clientState": "x"}]}).encode()
    with pytest.raises(SignatureInvalid):
        s.verify(mixed, {}, "cs-secret", now=NOW)
    with pytest.raises(SignatureMissing):
        s.verify(json.dumps({"value": [note]}).encode(), {}, "cs-secret", now=NOW)
    assert MicrosoftGraphScheme.validation_response({"validationToken": "Validation: abc"}) == "Validation: abc"
    assert MicrosoftGraphScheme.validation_response({}) is None


# ----------------------------------------------------------------------------------- VSCO Workspace


def test_vsco_token_query() -> None:
    s = VscoWorkspaceScheme()
    body = b'{"targetId": "01H35CCWYMJ5CTCKP8PX1AZHG6"}'
    ev = s.verify(body, {}, "conn-secret", query={"token": "conn-secret", "event": "job.created"})
    assert ev.record_id == "01h35ccwymj5ctckp8px1azhg6" and ev.event_type == "job.created"
    # the spec's ids are ULIDs: anything else would have the handler fetch what the hook did not name
    for target in ('"../job/01h35ccwymj5ctckp8px1azhg6"', "12345", '{"id": 1}', '["x"]', '"12345"', '""', "null"):
        with pytest.raises(InvalidInput) as bad:
            s.verify(b'{"targetId": ' + target.encode() + b"}", {}, "conn-secret", query={"token": "conn-secret"})
        assert bad.value.code == "bad_payload", target
    assert ev.event_id == "vsco:" + hashlib.sha256(body).hexdigest()
    assert not get_scheme("vsco-workspace").body_signed
    with pytest.raises(SignatureInvalid):
        s.verify(body, {}, "conn-secret", query={"token": "guess"})
    with pytest.raises(SignatureMissing):
        s.verify(body, {}, "conn-secret", query={})
    url = VscoWorkspaceScheme.hook_url(
        "https://hub.example.com/webhooks/vsco-workspace/c1", "a b&c", event="job.created"
    )
    assert url == "https://hub.example.com/webhooks/vsco-workspace/c1?token=a+b%26c&event=job.created"


# ------------------------------------------------------------------------------------------- Zapier


def test_zapier_hmac_header_and_token() -> None:
    s = get_scheme("zapier")
    body = json.dumps({"id": "hb-778", "event": "project.booked", "client": "A & B"}).encode()
    h = {"X-WedSync-Signature": "sha256=" + hmac_hex("zap-secret", body)}
    assert s.verify(body, h, "zap-secret") == VerifiedEvent("hb-778", "project.booked", "hb-778")
    assert s.verify(body, {}, "zap-secret", query={"token": "zap-secret"}).event_id == "hb-778"
    with pytest.raises(SignatureInvalid):
        s.verify(body + b" ", h, "zap-secret")
    with pytest.raises(SignatureInvalid):
        s.verify(body, h, "other")
    with pytest.raises(SignatureInvalid):  # a wrong signature is not rescued by a right token
        s.verify(body, {"X-WedSync-Signature": "sha256=00"}, "zap-secret", query={"token": "zap-secret"})
    with pytest.raises(SignatureInvalid):
        s.verify(body, {}, "zap-secret", query={"token": "zap-secreT"})
    with pytest.raises(SignatureMissing):
        s.verify(body, {}, "zap-secret")


def test_zapier_form_body_without_id_uses_body_hash() -> None:
    body = b"first_name=Ana&last_name=Silva&email=ana%40example.com"
    ev = ZapierScheme().verify(body, ZapierScheme.sign(body, "k"), "k")
    assert ev.event_id == "zap:" + hashlib.sha256(body).hexdigest()


def test_compare_is_constant_time_helper_used() -> None:
    # Timing is not measurable in a unit test; make sure a prefix of the right value is rejected.
    sig = hmac_hex(STRIPE_SECRET, f"{int(NOW)}.".encode() + STRIPE_BODY)
    with pytest.raises(SignatureInvalid):
        StripeScheme().verify(STRIPE_BODY, {"Stripe-Signature": f"t={int(NOW)},v1={sig[:-1]}"}, STRIPE_SECRET, now=NOW)


def test_now_default_is_wall_clock() -> None:
    t = int(time.time()) - 10
    StripeScheme().verify(STRIPE_BODY, stripe_header(STRIPE_BODY, STRIPE_SECRET, t), STRIPE_SECRET)


# ------------------------------------------------------------------------------------ deeply nested bodies

#: ``[[[[...]]]]`` far deeper than ``json.loads`` can recurse: it raised RecursionError, a 500 on every route
DEEP = b'{"id": "evt_1", "value": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"


def test_loads_json_refuses_what_nests_deeper_than_the_limit() -> None:
    from wedsync.connectors.webhooks import MAX_JSON_DEPTH, JSONTooDeep, loads_json

    at_limit = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert loads_json(at_limit) == json.loads(at_limit)
    below = '{"a": ' + at_limit[2:-2] + "}"
    assert loads_json(below.encode()) == json.loads(below)
    for body in ("[" + at_limit + "]", '{"a": ' + at_limit + "}", DEEP, DEEP.decode()):
        with pytest.raises(JSONTooDeep):
            loads_json(body)  # type: ignore[arg-type]
    wide = json.dumps({"items": [{"id": i, "tags": ["a", {"b": [1]}]} for i in range(500)]})
    assert loads_json(wide)["items"][499]["id"] == 499  # many brackets, shallow: fine
    assert loads_json('"[[[[[[[[' + "[" * 100 + '"') == "[" * 108  # brackets in a string are not nesting
    with pytest.raises(ValueError):
        loads_json(b"\xff")


def test_a_deeply_nested_body_is_invalid_input_on_every_json_scheme(paypal_keys: tuple[bytes, bytes]) -> None:
    """Signed (or token-carrying) bodies that nest too deep are a 422, not a RecursionError (a 500)."""
    t = int(NOW)
    cases: list[tuple[WebhookScheme, dict[str, str], dict[str, str]]] = [
        (StripeScheme(), stripe_header(DEEP, STRIPE_SECRET, t), {}),
        (SquareScheme(), SquareScheme.sign(DEEP, STRIPE_SECRET, url="https://hub.example/w"), {}),
        (AuthorizeNetScheme(), AuthorizeNetScheme.sign(DEEP, STRIPE_SECRET), {}),
        (MetaScheme(), MetaScheme.sign(DEEP, STRIPE_SECRET), {}),
        (CalendlyScheme(), CalendlyScheme.sign(DEEP, STRIPE_SECRET, timestamp=t), {}),
        (VscoWorkspaceScheme(), {}, {"token": STRIPE_SECRET}),
        (ZapierScheme(), ZapierScheme.sign(DEEP, STRIPE_SECRET), {}),
        (ZapierScheme(), {}, {"token": STRIPE_SECRET}),
    ]
    for scheme, headers, query in cases:
        with pytest.raises(InvalidInput, match="nested deeper") as err:
            scheme.verify(DEEP, headers, STRIPE_SECRET, url="https://hub.example/w", query=query, now=NOW)
        assert err.value.code == ("bad_payload" if isinstance(scheme, ZapierScheme) else "invalid_input")


def test_graph_refuses_a_body_without_its_client_state_before_parsing_it() -> None:
    s = MicrosoftGraphScheme()
    with pytest.raises(SignatureMissing):  # any caller: 401, the body is not parsed
        s.verify(DEEP, {}, "cs-secret", now=NOW)
    with pytest.raises(SignatureInvalid):
        s.verify(b'{"value": [{"clientState": "x"}], "n": ' + DEEP + b"}", {}, "cs-secret", now=NOW)
    with pytest.raises(InvalidInput, match="nested deeper"):  # the secret in it, parsed: 422
        s.verify(b'{"value": [{"clientState": "cs-secret"}], "n": ' + DEEP + b"}", {}, "cs-secret", now=NOW)
    with pytest.raises(SignatureMissing):
        s.verify(b"not json", {}, "cs-secret", now=NOW)
    # a secret of characters a JSON encoder may escape is compared after parsing, as before
    body = MicrosoftGraphScheme.sign([{"changeType": "updated", "resource": "me/events/1"}], "a+b/c")
    assert s.verify(body.replace(b"+", b"\\u002B"), {}, "a+b/c", now=NOW).event_type == "updated"


def test_zap_payload_parse_refuses_deep_json() -> None:
    from wedsync.connectors.channels.zapier import parse_zap_event

    with pytest.raises(InvalidInput, match="nested deeper") as err:
        parse_zap_event("honeybook", b'{"event": "client_created", "x": ' + DEEP + b"}", "application/json")
    assert err.value.code == "bad_payload"


def test_paypal_certificate_fetches_coalesce_and_failures_are_remembered(paypal_keys: tuple[bytes, bytes]) -> None:
    """Requests naming a certificate being fetched wait for that one fetch; a URL that failed is refused without
    another fetch for FAILED_CERT_TTL seconds; ``verify_may_block`` says when ``verify`` would fetch."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    key_pem, cert_pem = paypal_keys
    gate = threading.Event()
    calls: list[str] = []

    def slow(url: str) -> bytes:
        calls.append(url)
        gate.wait(5)
        return cert_pem if url == CERT_URL else b"not a certificate"

    s = PayPalScheme(slow)
    when = datetime.fromtimestamp(NOW, UTC)
    bad_url = CERT_URL.replace("CERT-", "CERT-X")
    good, bad = paypal_headers(key_pem, PAYPAL_BODY, when), paypal_headers(key_pem, PAYPAL_BODY, when, bad_url)
    assert s.verify_may_block(good) and s.verify_may_block({k.lower(): v for k, v in bad.items()})
    assert not s.verify_may_block({**good, "PAYPAL-CERT-URL": "https://evil.example/cert"})  # refused unfetched
    assert not StripeScheme().verify_may_block(good)

    def verify(h: dict[str, str]) -> str:
        try:
            return s.verify(PAYPAL_BODY, h, WEBHOOK_ID, now=NOW).event_id
        except SignatureInvalid as exc:
            return exc.message

    with ThreadPoolExecutor(8) as pool:
        futures = [pool.submit(verify, h) for h in (good, bad) * 4]
        time.sleep(0.3)
        gate.set()
        results = [f.result() for f in futures]
    assert sorted(calls) == sorted([CERT_URL, bad_url])  # one fetch per URL for eight requests
    assert results[::2] == ["WH-2WR32451HC0233532-67976317FL4543714"] * 4
    assert results[1::2] == ["PayPal certificate could not be loaded"] * 4
    assert not s.verify_may_block(good) and not s.verify_may_block(bad)  # loaded; recently failed
    with pytest.raises(SignatureInvalid, match="recently failed"):
        s.verify(PAYPAL_BODY, bad, WEBHOOK_ID, now=NOW)
    assert len(calls) == 2
    s._failed[bad_url] = time.monotonic() - 1  # FAILED_CERT_TTL has passed: fetched again
    assert s.verify_may_block(bad)
    with pytest.raises(SignatureInvalid, match=r"could not be loaded$"):
        s.verify(PAYPAL_BODY, bad, WEBHOOK_ID, now=NOW)
    assert calls[2:] == [bad_url]
    # a stale transmission is refused before anything is fetched
    stale = paypal_headers(key_pem, PAYPAL_BODY, when, CERT_URL.replace("CERT-", "CERT-STALE"))
    with pytest.raises(SignatureInvalid, match="tolerance"):
        s.verify(PAYPAL_BODY, stale, WEBHOOK_ID, now=NOW + 3600)
    assert len(calls) == 3
