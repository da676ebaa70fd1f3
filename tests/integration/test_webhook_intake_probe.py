"""Webhook intake as providers and vendors' Zaps really call it: secrets, bodies, ordering (found by a probe)."""

from __future__ import annotations

import json

from tests.conftest import auth
from wedsync.connectors.webhooks import StripeScheme


async def _vendor(hub):  # type: ignore[no-untyped-def]
    v = hub.tenancy.create_vendor("Golden Hour")
    _, key = hub.tenancy.create_key(v.id)
    return v, key


async def test_an_empty_webhook_secret_never_verifies_a_forged_webhook(api, hub) -> None:  # type: ignore[no-untyped-def]
    """A Stripe connection created with ``"webhook_secret": ""`` (the field is optional; a form left blank) took
    webhooks signed with an empty HMAC key, which anyone can compute: a forged dispute was acknowledged and
    stored. The empty value now counts as none (the hub keeps a random secret, so nothing verifies until the
    vendor gives the real one), and a connection stored with an empty secret refuses every webhook."""
    from sqlalchemy import func, select

    from wedsync.services.connections import WEBHOOK_SECRET
    from wedsync.store.tables import WebhookEvent

    v, key = await _vendor(hub)
    r = await api.post("/api/connections", headers=auth(key),
                       json={"provider": "stripe", "credentials": {"secret_key": "sk_test_x", "webhook_secret": ""}})
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert hub.connections.credentials(hub.connections.get_any(cid))[WEBHOOK_SECRET]
    body = json.dumps({"id": "evt_forged", "type": "charge.dispute.created",
                       "data": {"object": {"id": "dp_1"}}}).encode()
    r = await api.post(f"/webhooks/stripe/{cid}", content=body, headers=StripeScheme.sign(body, ""))
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_signature"

    # a connection stored with an empty secret before the fix: nothing verifies against it
    legacy = hub.connections.create(v.id, "stripe", credentials={"secret_key": "sk_test_y"})
    with hub.db.session() as s:
        creds = hub.vault.load(s, v.id, legacy.id, for_update=True)
        creds[WEBHOOK_SECRET] = ""
        hub.vault.store(s, v.id, legacy.id, creds)
    r = await api.post(f"/webhooks/stripe/{legacy.id}", content=body, headers=StripeScheme.sign(body, ""))
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_signature"
    with hub.db.read() as s:
        assert s.execute(select(func.count()).select_from(WebhookEvent)).scalar_one() == 0


async def _drain(hub, connection_id: str) -> None:  # type: ignore[no-untyped-def]
    import asyncio

    from wedsync.services.webhook_dispatch import process_batch

    for _ in range(100):
        if all(e.status in ("processed", "failed") for e in hub.inbox.events(connection_id)):
            return
        await process_batch(hub, "honeybook")
        await asyncio.sleep(0.05)
    raise AssertionError("the inbox did not drain")


async def test_a_hook_dated_in_the_future_does_not_freeze_the_clients_fields(api, hub) -> None:  # type: ignore[no-untyped-def]
    """A Client Created whose ``created_at`` is in the future (a typo, 2099; a local time read as UTC) stamped its
    fields with that time, so no later hook could ever change them: the phone of the project booked afterwards
    was dropped as older. A hook's time is at most when the hub received it."""
    from wedsync.connectors.webhooks import ZapierScheme
    from wedsync.services.connections import WEBHOOK_SECRET

    v, _ = await _vendor(hub)
    conn = hub.connections.create(v.id, "honeybook", credentials={})
    secret = hub.connections.credentials(conn)[WEBHOOK_SECRET]

    async def send(payload: dict[str, object]) -> None:
        body = json.dumps(payload).encode()
        r = await api.post(f"/webhooks/honeybook/{conn.id}", content=body, headers=ZapierScheme.sign(body, secret))
        assert r.status_code == 200, r.text
        await _drain(hub, conn.id)

    await send({"event": "client.created", "event_id": "c1", "first_name": "Fut", "last_name": "Ure",
                "email": "future@example.com", "phone_number": "4155550111", "created_at": "2099-01-01"})
    await send({"event": "project.booked", "event_id": "p1", "project_id": "P1", "project_name": "Fut wedding",
                "project_date": "2027-09-09", "client_first_name": "Fut", "client_last_name": "Ure",
                "client_email": "future@example.com", "client_phone": "4155550222"})
    (client,), _ = hub.crm.list_clients(v.id)
    assert client["phone"] == "+14155550222"


async def test_a_compressed_webhook_body_is_415_not_a_wrong_signature(api, hub) -> None:  # type: ignore[no-untyped-def]
    """A gzip-compressed hook (``Content-Encoding: gzip``) was answered 401 "does not match the body" (signed
    uncompressed) or 422 "neither JSON nor form-encoded" (signed compressed): either sent the vendor after the
    secret. It is a 415 that names the encoding, and nothing is stored."""
    import gzip

    from wedsync.connectors.webhooks import ZapierScheme
    from wedsync.services.connections import WEBHOOK_SECRET

    v, _ = await _vendor(hub)
    conn = hub.connections.create(v.id, "honeybook", credentials={})
    secret = hub.connections.credentials(conn)[WEBHOOK_SECRET]
    body = json.dumps({"event": "client.created", "event_id": "gz1", "email": "gz@example.com"}).encode()
    packed = gzip.compress(body)
    for signed in (body, packed):
        r = await api.post(f"/webhooks/honeybook/{conn.id}", content=packed,
                           headers={**ZapierScheme.sign(signed, secret), "Content-Encoding": "gzip",
                                    "Content-Type": "application/json"})
        assert r.status_code == 415, r.text
        assert r.json()["error"]["code"] == "unsupported_media_type" and "gzip" in r.json()["error"]["message"]
    r = await api.post(f"/webhooks/honeybook/{conn.id}", content=body,
                       headers={**ZapierScheme.sign(body, secret), "Content-Encoding": "identity"})
    assert r.status_code == 200, r.text
    assert [e.event_id for e in hub.inbox.events(conn.id)] == ["gz1"]


async def test_a_failed_event_whose_id_holds_slashes_can_be_retried(api, hub) -> None:  # type: ignore[no-untyped-def]
    """Calendly's event ids are ``{event}:{invitee URI}``: the retry route took the id as one path segment, so a
    failed Calendly event (or any id with a slash) answered 404 raw and percent-encoded, and could never be
    retried."""
    from urllib.parse import quote

    from wedsync.connectors.webhooks import VerifiedEvent

    v, key = await _vendor(hub)
    conn = hub.connections.create(v.id, "17hats", credentials={})
    eid = "invitee.created:https://api.calendly.com/scheduled_events/AAA/invitees/BBB"
    assert await hub.inbox.submit(vendor_id=v.id, connection_id=conn.id, provider="17hats",
                                  event=VerifiedEvent(eid, "client.created", None), body=b"{}")
    for encoded in (eid, quote(eid, safe="")):
        (row,) = hub.inbox.claim_pending(10, provider="17hats")
        hub.inbox.mark_failed(row.id, "Fatal: simulated", retry=False)
        r = await api.post(f"/api/connections/{conn.id}/webhook-events/{encoded}/retry", headers=auth(key))
        assert r.status_code == 200, r.text
        assert r.json()["event_id"] == eid and r.json()["status"] == "pending"
    r = await api.post(f"/api/connections/{conn.id}/webhook-events/{eid}/x/retry", headers=auth(key))
    assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_event"


async def test_retrying_a_connections_newest_event_answers_the_event(api, hub) -> None:  # type: ignore[no-untyped-def]
    """The retry read the event back as the page after ``id + 1``, a cursor that must name a row of the same
    connection: retrying a connection's newest event, or one followed in the inbox by another connection's,
    was put back to pending and then answered 422 ``invalid_cursor``."""
    from wedsync.connectors.webhooks import VerifiedEvent

    v, key = await _vendor(hub)
    mine = hub.connections.create(v.id, "17hats", credentials={})
    other = hub.connections.create(v.id, "iris-works", credentials={})
    for n, (conn, provider) in enumerate(((mine, "17hats"), (other, "iris-works"), (mine, "17hats"))):
        assert await hub.inbox.submit(vendor_id=v.id, connection_id=conn.id, provider=provider,
                                      event=VerifiedEvent(f"evt-{n}", "client.created", None), body=b"{}")
    for row in hub.inbox.claim_pending(10, provider="17hats"):
        hub.inbox.mark_failed(row.id, "Fatal: simulated", retry=False)
    for event in hub.inbox.events(mine.id):
        r = await api.post(f"/api/connections/{mine.id}/webhook-events/{event.event_id}/retry", headers=auth(key))
        assert r.status_code == 200, r.text
        assert r.json()["event_id"] == event.event_id and r.json()["status"] == "pending"


async def test_subscribing_again_after_the_public_url_changed_moves_the_providers_hooks(  # type: ignore[no-untyped-def]
        api, hub, sandbox_url) -> None:
    """The hub's hooks at VSCO Workspace were subscribed once per event, to the URL of that day: after
    ``WEDSYNC_PUBLIC_URL`` changed (the hub moved), subscribing again did nothing and every hook kept going to the
    old address. Now each hook made to another URL is subscribed at the new one and the old one removed."""
    import httpx

    v, key = await _vendor(hub)
    conn = hub.connections.create(v.id, "vsco-workspace", credentials={"api_key": "sandbox-vsco-key"},
                                  base_url=f"{sandbox_url}/vsco-workspace/api/v2")

    def hooks() -> list[dict[str, str]]:
        items = httpx.get(f"{sandbox_url}/vsco-workspace/api/v2/rest-hook", params={"pageSize": 100},
                          headers={"X-API-KEY": "sandbox-vsco-key"}).json()["items"]
        return [h for h in items if f"/webhooks/vsco-workspace/{conn.id}" in h["url"]]

    hub.subscriptions.public_url = "https://old.hub.example"
    assert (await api.post(f"/api/connections/{conn.id}/subscriptions", headers=auth(key))).status_code == 200
    assert len(hooks()) == 4 and all(h["url"].startswith("https://old.hub.example/") for h in hooks())
    hub.subscriptions.public_url = "https://new.hub.example"
    r = await api.post(f"/api/connections/{conn.id}/subscriptions", headers=auth(key))
    assert r.status_code == 200, r.text
    now = hooks()
    assert len(now) == 4 and all(h["url"].startswith("https://new.hub.example/") for h in now), now
    assert {h["id"] for h in now} == {s["remote_id"] for s in r.json()}
    again = await api.post(f"/api/connections/{conn.id}/subscriptions", headers=auth(key))
    assert {s["remote_id"] for s in again.json()} == {h["id"] for h in hooks()}  # nothing to move: unchanged


async def test_a_zap_hooks_event_names_the_record_it_is_about(api, hub) -> None:  # type: ignore[no-untyped-def]
    """The vendor's list of webhook events showed ``record_id: null`` for every Zapier-style hook (the scheme
    looked for a ``record_id`` or ``id`` field): it is the client or project the hook is about, as stored."""
    from wedsync.connectors.webhooks import ZapierScheme
    from wedsync.services.connections import WEBHOOK_SECRET

    v, key = await _vendor(hub)
    conn = hub.connections.create(v.id, "17hats", credentials={})
    secret = hub.connections.credentials(conn)[WEBHOOK_SECRET]
    for payload in ({"event": "client.created", "event_id": "c1", "contact_id": "77", "email": "a@example.com"},
                    {"event": "project.booked", "event_id": "p1", "project_id": "P9", "contact_id": "77",
                     "email": "a@example.com"}):
        body = json.dumps(payload).encode()
        r = await api.post(f"/webhooks/17hats/{conn.id}", content=body, headers=ZapierScheme.sign(body, secret))
        assert r.status_code == 200, r.text
    r = await api.get(f"/api/connections/{conn.id}/webhook-events", headers=auth(key))
    assert {e["event_id"]: e["record_id"] for e in r.json()["items"]} == {"c1": "17h-77", "p1": "17h-job-P9"}


async def test_a_honeybook_client_is_one_client_whichever_hook_brought_its_email(api, hub) -> None:  # type: ignore[no-untyped-def]
    """HoneyBook clients are keyed by the hash of e-mail and name (its CSV has no id column): a Client Created
    without the e-mail and the New Project Booked that carried it made two clients of the one HoneyBook client,
    both with ``honeybook_id`` HB900. A hook whose product id a stored client carries is that client."""
    from wedsync.connectors.webhooks import ZapierScheme
    from wedsync.services.connections import WEBHOOK_SECRET

    v, _ = await _vendor(hub)
    conn = hub.connections.create(v.id, "honeybook", credentials={})
    secret = hub.connections.credentials(conn)[WEBHOOK_SECRET]
    for payload in (
            {"event": "Client Created", "event_id": "c1", "client_id": "HB900", "first_name": "Quinn",
             "last_name": "Noemail", "phone_number": "415 555 0190", "created_at": "2026-12-01T10:00:00Z"},
            {"event": "New Project Booked", "event_id": "p1", "project_id": "HBP900", "project_name": "Quinn wedding",
             "project_date": "2027-03-03", "client_id": "HB900", "client_first_name": "Quinn",
             "client_last_name": "Noemail", "client_email": "quinn@example.com",
             "booked_at": "2026-12-02T10:00:00Z"}):
        body = json.dumps(payload).encode()
        r = await api.post(f"/webhooks/honeybook/{conn.id}", content=body, headers=ZapierScheme.sign(body, secret))
        assert r.status_code == 200, r.text
        await _drain(hub, conn.id)
    assert all(e.status == "processed" for e in hub.inbox.events(conn.id))
    clients, _ = hub.crm.list_clients(v.id)
    assert [(c["email"], c["phone"], [str(d) for d in c["wedding_dates"]]) for c in clients] == [
        ("quinn@example.com", "+14155550190", ["2027-03-03"])]


async def test_a_hook_url_with_a_trailing_slash_is_served_not_redirected(api, hub) -> None:  # type: ignore[no-untyped-def]
    """``/webhooks/{provider}/{id}/`` (a URL pasted with a slash) was answered 307 to the URL without it, and
    nothing stored: Stripe and most providers treat a redirect as a failed delivery. It is taken as is."""
    from wedsync.services.connections import WEBHOOK_SECRET

    v, _ = await _vendor(hub)
    conn = hub.connections.create(v.id, "stripe", credentials={"secret_key": "sk_test_x",
                                                                "webhook_secret": "whsec_probe"})
    assert hub.connections.credentials(conn)[WEBHOOK_SECRET] == "whsec_probe"
    body = json.dumps({"id": "evt_slash", "type": "charge.succeeded", "data": {"object": {"id": "ch_1"}}}).encode()
    r = await api.post(f"/webhooks/stripe/{conn.id}/", content=body, headers=StripeScheme.sign(body, "whsec_probe"),
                       follow_redirects=False)
    assert r.status_code == 200, (r.status_code, r.text)
    assert [e.event_id for e in hub.inbox.events(conn.id)] == ["evt_slash"]
