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
