"""No credential, token or webhook secret reaches the logs, on success and on every error path."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator

import pytest

from tests.conftest import auth
from wedsync.logging import configure_logging
from wedsync.services.connections import WEBHOOK_SECRET
from wedsync.services.sync_engine import DirectSteps, drive_run

PROVIDER_KEY = "vsco-live-KEY-7f3a9c1e5b2d"


@pytest.fixture
def secret_sandbox() -> Iterator[str]:
    from wedsync.sandbox.app import create_sandbox_app
    from wedsync.sandbox.server import start_sandbox_in_thread

    app = create_sandbox_app(vsco_contacts=150, vsco_jobs=20, options={"vsco-workspace": {"api_key": PROVIDER_KEY}})
    url, stop = start_sandbox_in_thread(port=0, app=app)
    try:
        yield url
    finally:
        stop()


async def test_sync_webhooks_and_errors_leak_nothing(api, hub, secret_sandbox) -> None:  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    configure_logging("DEBUG", json=True, stream=stream)
    try:
        v = hub.tenancy.create_vendor("Leak Check Studio")
        _, vendor_key = hub.tenancy.create_key(v.id)
        base = f"{secret_sandbox}/vsco-workspace/api/v2"
        r = await api.post("/api/connections", headers=auth(vendor_key),
                           json={"provider": "vsco-workspace", "base_url": base,
                                 "credentials": {"api_key": PROVIDER_KEY}})
        assert r.status_code == 201
        conn_id = r.json()["id"]
        conn = hub.connections.get(v.id, conn_id)
        hook_secret = hub.connections.credentials(conn)[WEBHOOK_SECRET]

        run = hub.sync.create_run(v.id, conn_id, "full")
        summary = await drive_run(run.id, DirectSteps(hub.sync))
        assert summary["status"] == "succeeded"

        # error paths: provider rejects a wrong key, a 404 re-fetch, a bad and a good webhook token
        bad = hub.connections.create(v.id, "vsco-workspace", credentials={"api_key": PROVIDER_KEY + "-wrong"},
                                     base_url=base)
        run2 = hub.sync.create_run(v.id, bad.id, "full")
        with pytest.raises(Exception):  # noqa: B017 - any connector error; the point is the log
            await drive_run(run2.id, DirectSteps(hub.sync))
        await hub.sync.refetch(conn_id, "contacts", "01h35ccwymj5ctckp8px1azhg6")
        r = await api.post(f"/webhooks/vsco-workspace/{conn_id}?token=nope&event=contact.created",
                           json={"targetId": "x"})
        assert r.status_code == 401
        r = await api.post(f"/webhooks/vsco-workspace/{conn_id}?token={hook_secret}&event=contact.created",
                           json={"targetId": "01h35ccwymj5ctckp8px1azhg6"})
        assert r.status_code == 200
        logging.getLogger("uvicorn.error").info("token=%s key=%s", hook_secret, PROVIDER_KEY)
        await hub.connections.aclose()
    finally:
        configure_logging("WARNING")
    out = stream.getvalue()
    assert "provider.request" in out  # the requests were logged...
    for secret in (PROVIDER_KEY, hook_secret, vendor_key, vendor_key.split("_", 2)[2]):
        assert secret not in out  # ...without their credentials


def test_a_failed_statement_never_carries_the_clients_data(hub) -> None:  # type: ignore[no-untyped-def]
    """A page write that fails (its connection deleted mid-run: a foreign key) raised an error whose text held
    the statement's parameters, names, e-mails and phones of the page's clients, and DBOS logged it whole
    (found by a probe). The engines hide parameters."""
    from sqlalchemy.exc import IntegrityError

    from wedsync.domain.crm import ClientRecord

    v = hub.tenancy.create_vendor("Leak Studio")
    conn = hub.connections.create(v.id, "honeybook", credentials={})
    with pytest.raises(IntegrityError) as failed:
        with hub.db.engine.begin() as c:  # a vendor that does not exist: the foreign key refuses the rows
            hub.sync.upsert(c, "01h35ccwymj5ctckp8px1azhg6", conn.id, "contacts", [
                ClientRecord("r1", first_name="Private", last_name="Person", email="private.person@example.com",
                             phone="+14155550199")])
    text = str(failed.value)
    assert "private.person@example.com" not in text and "+14155550199" not in text and "Private" not in text
    assert "[SQL parameters hidden" in text  # the statement is still named, only its values are not
