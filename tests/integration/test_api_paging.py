"""Every list of the API is paged the same way: ``{items, next_cursor}``, ``limit`` and ``after`` (the previous
page's ``next_cursor``); walking a list one item at a time gives exactly the whole list, in its order."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from tests.conftest import auth
from tests.integration.tenancy_seed import seed_vendor
from wedsync.services.reconciliation import Reconciler
from wedsync.store import tables as t
from wedsync.store.tables import new_id, utcnow
from wedsync.store.tables_payments import PaymentDispute


async def _walk(api: Any, path: str, headers: dict[str, str], limit: int, *, over: bool = False, **params: Any
                ) -> list[Any]:
    """Every item of a list, page by page (``over``: a page may hold more than ``limit``)."""
    items: list[Any] = []
    after = None
    for _ in range(200):
        query = {**params, "limit": limit, **({"after": after} if after is not None else {})}
        r = await api.get(path, headers=headers, params=query)
        assert r.status_code == 200, (path, query, r.text)
        page = r.json()
        assert isinstance(page, dict) and {"items", "next_cursor"} <= set(page), (path, page)
        assert over or len(page["items"]) <= limit
        items += page["items"]
        after = page["next_cursor"]
        if after is None:
            return items
    raise AssertionError(f"{path}: the pages never ended")


async def _more(api: Any, hub: Any, o: dict[str, Any]) -> None:
    """A second (or third) item in the lists the seed puts one in."""
    v, h = o["vendor_id"], auth(o["key"])
    with hub.db.session() as s:
        s.add(t.HookSubscription(vendor_id=v, connection_id=o["connection_id"], remote_id="hook-2",
                                 event="contact.updated", target_url="http://x"))
        s.add(t.HookSubscription(vendor_id=v, connection_id=o["connection_id"], remote_id="hook-3",
                                 event="job.created", target_url="http://x"))
        s.add(PaymentDispute(id=new_id(), vendor_id=v, intent_id=o["transaction_id"],
                             connection_id=o["stripe_connection_id"], provider="stripe", dispute_ref="dp_second",
                             amount_minor=500, currency="USD", reason="duplicate", status="needs_response",
                             share={}, evidence_due_by=utcnow() + timedelta(days=7)))
    hub.tenancy.create_key(v, name="second")
    hub.crm.set_policy(v, field="email", kind="newest_wins")
    hub.crm.set_policy(v, field="phone", connection_id=o["connection_id"], kind="manual")
    hub.crm.set_mappings(v, o["hb_connection_id"], {"lead_source": "found_us", "budget": "budget", "venue": None})
    period = {"since": (utcnow() - timedelta(hours=1)).isoformat(),
              "until": (utcnow() + timedelta(minutes=5)).isoformat()}
    r = await api.post("/api/payments/reconciliations", headers=h, json=period)
    assert r.status_code == 200, r.text


async def test_every_list_is_paged_by_keyset(api, hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    o = await seed_vendor(api, hub, "pager", sandbox, 40)
    await _more(api, hub, o)
    v, h = o["vendor_id"], auth(o["key"])
    _, op = hub.tenancy.create_key(None, operator=True)
    hub.tenancy.create_vendor("Another Studio")
    # each list, its whole content as the service has it (in the list's order), and who may read it
    lists: list[tuple[str, dict[str, str], dict[str, Any], list[Any]]] = [
        ("/api/connections", h, {}, [c.id for c in hub.connections.list(v)]),
        ("/api/keys", h, {}, [k.id for k in hub.tenancy.list_keys(v)]),
        ("/api/vendors", auth(op), {}, [x.id for x in hub.tenancy.list_vendors()]),
        (f"/api/connections/{o['connection_id']}/subscriptions", h, {},
         [x.id for x in hub.subscriptions.list(v, o["connection_id"])]),
        ("/api/calendar/sources", h, {}, [x["id"] for x in hub.calendar.list_sources(v)]),
        ("/api/calendar/blocks", h, {}, [x["id"] for x in hub.calendar.blocks(v)]),
        ("/api/payments/escrow", h, {}, [x["id"] for x in hub.payments.list_holds(v)]),
        ("/api/payments/disputes", h, {}, [x["id"] for x in hub.payments.list_disputes(v)]),
        ("/api/payments/reconciliations", h, {}, [x["id"] for x in Reconciler(hub).reports(v, 500)]),
        ("/api/crm/policies", h, {}, [x["id"] for x in hub.crm.list_policies(v)]),
        (f"/api/crm/connections/{o['hb_connection_id']}/field-mappings", h, {},
         [(x["entity"], x["source_key"]) for x in hub.crm.list_mappings(v, o["hb_connection_id"])]),
    ]
    for path, headers, params, expected in lists:
        assert len(expected) >= 2, (path, expected)  # paging one at a time has pages to walk
        whole = await _walk(api, path, headers, 500, **params)
        one_by_one = await _walk(api, path, headers, 1, **params)
        two_by_two = await _walk(api, path, headers, 2, **params)
        key = (lambda x: (x["entity"], x["source_key"])) if "field-mappings" in path else (lambda x: x["id"])
        assert [key(x) for x in whole] == expected, path
        assert one_by_one == whole and two_by_two == whole, path
        # the first page of a default request is the list from its start, and it says whether there is more
        first = (await api.get(path, headers=headers, params=params)).json()
        assert first["items"] == whole[:len(first["items"])], path


async def test_unpaged_lists_still_answer_every_item_to_internal_callers(hub) -> None:  # type: ignore[no-untyped-def]
    """``limit`` None (the demos, the CLI, the connection's deletion) is the whole list, as before."""
    v = hub.tenancy.create_vendor("Many Keys")
    made = [hub.tenancy.create_key(v.id, name=f"k{i}")[0].id for i in range(7)]
    assert [k.id for k in hub.tenancy.list_keys(v.id)] == made
    assert [k.id for k in hub.tenancy.list_keys(v.id, limit=3)] == made[:3]
    assert [k.id for k in hub.tenancy.list_keys(v.id, limit=3, after=made[2])] == made[3:6]


async def test_ordered_lists_refuse_a_cursor_that_is_not_theirs(api, hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    """Lists ordered by something else than the id (blocks by start time, policies by connection and field,
    mappings by entity and key) continue after the cursor's row: a cursor that names none of the vendor's rows
    is a 422 ``invalid_cursor``, not a page that silently starts somewhere else."""
    a = await seed_vendor(api, hub, "apage", sandbox, 40)
    b = await seed_vendor(api, hub, "bpage", sandbox, 50)
    b_block = hub.calendar.blocks(b["vendor_id"])[0]["id"]
    b_policy = hub.crm.list_policies(b["vendor_id"])[0]["id"]
    h = auth(a["key"])
    mappings = f"/api/crm/connections/{a['hb_connection_id']}/field-mappings"
    _, b_mapping_cursor = hub.crm.mappings_page(b["vendor_id"], b["hb_connection_id"], limit=1)
    assert b_mapping_cursor
    for path, cursor in (("/api/calendar/blocks", b_block), ("/api/calendar/blocks", "01h35ccwymj5ctckp8px1azhg6"),
                         ("/api/crm/policies", b_policy), ("/api/crm/policies", "01h35ccwymj5ctckp8px1azhg6"),
                         (mappings, b_mapping_cursor), (mappings, "01h35ccwymj5ctckp8px1azhg6")):
        r = await api.get(path, headers=h, params={"after": cursor})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_cursor", (path, r.text)
    for path in ("/api/connections", "/api/calendar/blocks", "/api/payments/escrow"):
        r = await api.get(path, headers=h, params={"after": "3"})
        assert r.status_code == 422, (path, r.text)  # not a cursor at all
        r = await api.get(path, headers=h, params={"limit": 501})
        assert r.status_code == 422, (path, r.text)


async def test_import_errors_page_like_the_other_lists(api, hub, sandbox) -> None:  # type: ignore[no-untyped-def]
    """``after``/``next_cursor`` as everywhere (the cursor is a line number); the former ``after_line`` and
    ``next_after_line`` still work."""
    o = await seed_vendor(api, hub, "lines", sandbox, 40)
    path, h = f"/api/crm/imports/{o['job_id']}/errors", auth(o["key"])
    whole = (await api.get(path, headers=h)).json()
    assert whole["items"] and whole["next_cursor"] is None and whole["next_after_line"] is None
    assert await _walk(api, path, h, 1, over=True) == whole["items"]
    line = whole["items"][0]["line"]
    by_new = (await api.get(path, headers=h, params={"after": line - 1})).json()
    by_old = (await api.get(path, headers=h, params={"after_line": line - 1})).json()
    assert by_new == by_old == whole
    assert (await api.get(path, headers=h, params={"after": line})).json()["items"] == \
        [e for e in whole["items"] if e["line"] > line]
    r = await api.get(path, headers=h, params={"after": 1, "after_line": 2})
    assert r.status_code == 422 and r.json()["error"]["code"] == "conflicting_cursor"
