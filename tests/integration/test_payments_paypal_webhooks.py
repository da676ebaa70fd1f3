"""PayPal webhooks from the sandbox, verified by the hub's real scheme: the certificate is fetched from an
operator-trusted prefix (WEDSYNC_PAYPAL_CERT_URL_PREFIXES, honoured only with allow_private_urls), a dispute
travels from the sandbox through the intake and the inbox to the dispute handler; the prefix check keeps the
SSRF protections."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest

from wedsync.connectors.webhooks import PayPalScheme, SignatureInvalid, cert_url_under_prefix, get_scheme
from wedsync.services.payments import IntentRequest

CREDS = {"client_id": "AWsandbox-paypal-platform-client", "client_secret": "EKsandbox-paypal-platform-secret"}


def test_cert_prefix_check_is_strict() -> None:
    prefix = "http://127.0.0.1:8765/paypal/v1/notifications/certs/"
    assert cert_url_under_prefix(prefix + "CERT-1", prefix)
    for bad in (prefix, "http://127.0.0.1:8766/paypal/v1/notifications/certs/CERT-1",  # other port
                "https://127.0.0.1:8765/paypal/v1/notifications/certs/CERT-1",  # other scheme
                "http://127.0.0.1.evil.example:8765/paypal/v1/notifications/certs/CERT-1",
                "http://u:p@127.0.0.1:8765/paypal/v1/notifications/certs/CERT-1",
                prefix + "../../../admin", prefix + "%2e%2e/admin", prefix + "CERT-1?x=1", prefix + "CERT-1#f",
                "http://127.0.0.1:8765/paypal/v1/notifications/certsX/CERT-1", "file:///etc/passwd"):
        assert not cert_url_under_prefix(bad, prefix), bad

    fetched: list[str] = []

    def loader(url: str) -> bytes:
        fetched.append(url)
        return b""

    scheme = PayPalScheme(cert_loader=loader, extra_prefixes=lambda: ())
    with pytest.raises(SignatureInvalid):
        scheme._certificate(prefix + "CERT-1")
    assert fetched == []  # refused before anything is fetched


def test_operator_prefixes_need_allow_private_urls(hub: Any) -> None:
    from wedsync.bootstrap import set_hub
    from wedsync.connectors.webhooks import operator_paypal_cert_prefixes

    set_hub(hub)
    try:
        hub.settings.paypal_cert_url_prefixes = "http://127.0.0.1:1/paypal/v1/notifications/certs/, "
        assert operator_paypal_cert_prefixes() == ("http://127.0.0.1:1/paypal/v1/notifications/certs/",)
        hub.settings.allow_private_urls = False  # production: PayPal's own domains only
        assert operator_paypal_cert_prefixes() == ()
        with pytest.raises(SignatureInvalid):
            get_scheme("paypal")._certificate("http://127.0.0.1:1/paypal/v1/notifications/certs/CERT-1")  # type: ignore[attr-defined]
    finally:
        set_hub(None)


async def test_paypal_dispute_webhook_from_the_sandbox(hub: Any, sandbox: str) -> None:
    from tests.e2e.procs import serve_app_in_thread
    from wedsync.api.app import create_app
    from wedsync.bootstrap import set_hub
    from wedsync.sandbox.paypal import PayPalEmulator
    from wedsync.services.connections import WEBHOOK_SECRET
    from wedsync.services.webhook_dispatch import process_batch

    v = hub.tenancy.create_vendor("Disputed on PayPal")
    conn = hub.connections.create(v.id, "paypal", credentials=CREDS, base_url=f"{sandbox}/paypal")
    await hub.payments.setup(v.id, {"primary": conn.id, "feeStructure": {"platformFeeBps": 1000}})
    hub.payments.complete_onboarding(v.id, conn.id, PayPalEmulator.merchant_for(v.id))
    view, _ = hub.payments.create_intent(v.id, "pp-d", IntentRequest(
        booking_ref="ppd", amount_minor=15_000, currency="USD", payment_method="pm_card_visa"))
    paid = await hub.payments.run_inline(view["id"])
    assert paid["status"] == "succeeded", paid
    cert_base = f"{sandbox}/paypal/v1/notifications/certs/"
    hub.settings.paypal_cert_url_prefixes = cert_base
    set_hub(hub)
    base, stop = serve_app_in_thread(create_app(launch_workflows=False))
    try:
        secret = hub.connections.credentials(hub.connections.get_any(conn.id))[WEBHOOK_SECRET]
        hooked = httpx.post(f"{sandbox}/_sandbox/paypal/mutate", json={
            "action": "webhook", "secret": secret, "url": f"{base}/webhooks/paypal/{conn.id}",
            "cert_url_base": cert_base}, timeout=10)
        assert hooked.status_code == 200 and hooked.json()["cert_url"].startswith(cert_base), hooked.text
        opened = httpx.post(f"{sandbox}/_sandbox/paypal/mutate", json={
            "action": "open_dispute", "charge": paid["gatewayRef"], "reason": "fraudulent"}, timeout=10)
        assert opened.status_code == 200, opened.text

        async def until(cond: Any) -> Any:
            for _ in range(150):
                await process_batch(hub, "paypal")
                got = cond()
                if got:
                    return got
                await asyncio.sleep(0.05)
            raise AssertionError("no dispute effect from paypal")

        disp = await until(lambda: hub.payments.list_disputes(v.id))
        assert disp[0]["transactionId"] == view["id"] and disp[0]["amountMinor"] == 15_000
        assert sum(disp[0]["share"][k] for k in ("vendor", "platform", "affiliate")) == 15_000
        dispute_id = opened.json().get("dispute_id") or opened.json().get("id") or disp[0]["disputeRef"]
        closed = httpx.post(f"{sandbox}/_sandbox/paypal/mutate", json={
            "action": "close_dispute", "dispute": dispute_id, "outcome": "won"}, timeout=10)
        assert closed.status_code == 200, closed.text
        await until(lambda: hub.payments.list_disputes(v.id)[0]["status"] == "won")
        kinds = [t["kind"] for t in hub.payments.ledger(v.id, intent_id=view["id"])]
        assert kinds.count("dispute_withdrawal") == 1 and kinds.count("dispute_reinstatement") == 1
        assert hub.payments.ledger_check(v.id)["balanced"]
    finally:
        stop()
        set_hub(None)
        await hub.connections.aclose()


async def test_a_slow_certificate_server_holds_up_only_the_paypal_webhooks_waiting_for_it(hub: Any) -> None:
    """Junk-signed PayPal webhooks naming new certificate URLs under the trusted prefix made the hub fetch each
    certificate with a blocking GET on the event loop: the whole API (here /healthz) waited for it. The fetch now
    runs on a worker thread, once for all the requests naming the same URL, and a URL that failed is refused
    without another fetch."""
    import base64
    import threading
    import time
    import uuid
    from datetime import UTC, datetime
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from tests.e2e.procs import serve_app_in_thread
    from wedsync.api.app import create_app
    from wedsync.bootstrap import set_hub

    fetched: list[str] = []

    class SlowCerts(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetched.append(self.path)
            time.sleep(1.5)
            self.send_response(200)
            self.send_header("Content-Length", "17")
            self.end_headers()
            self.wfile.write(b"not a certificate")

        def log_message(self, *_args: Any) -> None:
            return

    certs = ThreadingHTTPServer(("127.0.0.1", 0), SlowCerts)
    threading.Thread(target=certs.serve_forever, daemon=True).start()
    prefix = f"http://127.0.0.1:{certs.server_port}/paypal/v1/notifications/certs/"
    hub.settings.paypal_cert_url_prefixes = prefix
    v = hub.tenancy.create_vendor("Slow certificates")
    conn = hub.connections.create(v.id, "paypal", credentials=CREDS, base_url="http://127.0.0.1:9/paypal")
    set_hub(hub)
    base, stop = serve_app_in_thread(create_app(launch_workflows=False))
    body = b'{"id": "WH-junk", "event_type": "PAYMENT.CAPTURE.COMPLETED", "resource": {"id": "x"}}'
    one, other = (f"CERT-{uuid.uuid4().hex}" for _ in range(2))

    def junk(cert: str) -> dict[str, str]:
        return {"PAYPAL-TRANSMISSION-ID": str(uuid.uuid4()),
                "PAYPAL-TRANSMISSION-TIME": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                "PAYPAL-TRANSMISSION-SIG": base64.b64encode(b"junk").decode(), "PAYPAL-CERT-URL": prefix + cert,
                "PAYPAL-AUTH-ALGO": "SHA256withRSA"}

    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            async def hook(cert: str) -> tuple[httpx.Response, float]:
                start = time.monotonic()
                r = await client.post(f"/webhooks/paypal/{conn.id}", content=body, headers=junk(cert))
                return r, time.monotonic() - start

            async def health() -> tuple[httpx.Response, float]:
                await asyncio.sleep(0.3)  # the fetches are under way
                start = time.monotonic()
                r = await client.get("/healthz")
                return r, time.monotonic() - start

            *hooks, (healthz, health_took) = await asyncio.gather(*(hook(one) for _ in range(5)), hook(other),
                                                                  health())
            assert healthz.status_code == 200 and health_took < 0.5, health_took
            for r, _took in hooks:
                assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_signature", r.text
            assert sorted(fetched) == sorted(f"/paypal/v1/notifications/certs/{c}" for c in (one, other))
            again, took = await hook(one)  # failed a moment ago: refused without another fetch
            assert again.status_code == 401 and took < 0.5 and len(fetched) == 2
    finally:
        stop()
        certs.shutdown()
        set_hub(None)
