"""Input the API bounds before it costs anything: body sizes, control characters, integers, collection sizes,
cursors, enum filters and content types each answer a coded 4xx, never a 500 or a long-held write lock."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import auth


async def _vendor(hub):  # type: ignore[no-untyped-def]
    v = hub.tenancy.create_vendor("Golden Hour")
    _, key = hub.tenancy.create_key(v.id)
    return v, key


async def _asgi(app: Any, method: str, path: str, headers: list[tuple[bytes, bytes]], chunks: int,
                chunk: bytes = b" " * 65536) -> tuple[int, bytes, int]:
    """Call the app with a body of ``chunks`` chunks and say how many of them it pulled: (status, body, pulled)."""
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": pulled < chunks}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": method, "scheme": "http",
             "path": path, "raw_path": path.encode(), "root_path": "", "query_string": b"",
             "headers": [(b"host", b"hub.test"), *headers], "client": ("127.0.0.1", 5000),
             "server": ("hub.test", 80), "state": {}}
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    return start["status"], b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body"), pulled


async def test_a_body_over_the_limit_is_413_before_it_is_read_or_the_key_checked(api, hub) -> None:  # type: ignore[no-untyped-def]
    """A 300 MB JSON body to ``PUT /api/crm/policies`` without a key was read and parsed whole (the hub grew by
    900 MB) before its 401. Now every route has a limit (1 MiB for JSON and webhooks): a declared Content-Length
    over it is a 413 ``body_too_large`` before one byte is read; a chunked body is cut off once it passes it."""
    from wedsync.api.app import create_app
    from wedsync.api.limits import MAX_JSON_BODY

    _, key = await _vendor(hub)
    app = create_app(launch_workflows=False)
    json_ct = (b"content-type", b"application/json")
    chunks = 300 * 16  # 300 MiB of 64 KiB chunks, if all were pulled
    for path, headers in (("/api/crm/policies", [json_ct]),
                          ("/api/crm/policies", [json_ct, (b"authorization", f"Bearer {key}".encode())]),
                          ("/api/connections", [json_ct]),
                          ("/webhooks/stripe/01m8xy342g4ay7173hm8hnk7jq", [json_ct]),
                          ("/api/crm/imports", [(b"content-type", b"text/csv")])):
        method = "PUT" if path == "/api/crm/policies" else "POST"
        declared = [(b"content-length", str(chunks * 65536).encode())]
        status, body, pulled = await _asgi(app, method, path, [*headers, *declared], chunks)
        assert (status, pulled) == (413, 0), (path, status, body, pulled)
        assert b'"body_too_large"' in body, body
        if path == "/api/crm/imports":
            continue  # the upload's own, larger limit (200 MiB) is covered by test_api_basics
        status, body, pulled = await _asgi(app, method, path, headers, chunks)  # chunked: no Content-Length
        assert status == 413 and b'"body_too_large"' in body, (path, status, body)
        assert pulled <= MAX_JSON_BODY // 65536 + 1, (path, pulled)
    # under the limit, a body is read as before
    r = await api.put("/api/crm/policies", headers=auth(key), json={"kind": "manual", "field": "email"})
    assert r.status_code == 200, r.text
    # the iCalendar check takes its 5 MB text (JSON-escaped): more than the JSON limit, not refused by size
    ics = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//t//EN\r\n" + "X-PAD:" + "a" * (MAX_JSON_BODY + 10) + \
        "\r\nEND:VCALENDAR\r\n"
    r = await api.post("/api/calendar/ics/validate", headers=auth(key), json={"ics": ics})
    assert r.status_code != 413, r.text


@pytest.fixture
async def any_api(any_hub):  # type: ignore[no-untyped-def]
    """The ``api`` client on SQLite, and again on PostgreSQL when available."""
    import httpx

    from wedsync.api.app import create_app
    from wedsync.bootstrap import set_hub

    set_hub(any_hub)
    app = create_app(launch_workflows=False)
    any_hub.inbox.start()
    transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://hub.test") as client:
        yield client
    await any_hub.aclose()
    set_hub(None)


async def test_nul_and_control_characters_are_422_on_sqlite_and_postgresql(any_api, any_hub) -> None:  # type: ignore[no-untyped-def]
    """PostgreSQL cannot store NUL in text: any NUL in a path, a query or a body string was a 500 (psycopg
    ``DataError``), unauthenticated webhooks included. Now a 422 ``invalid_characters`` before anything runs, on
    both databases; a value the database still refuses is a 422 ``invalid_data``, never a 500."""
    from wedsync.connectors.webhooks import StripeScheme
    from wedsync.services.connections import WEBHOOK_SECRET

    api, hub = any_api, any_hub
    v, key = await _vendor(hub)
    r = await api.post("/api/crm/inquiries", headers=auth(key),
                       json={"inquiry_id": "i0", "first_name": "Ana", "last_name": "Ruiz", "email": "ana@example.com"})
    assert r.status_code == 201, r.text
    cid = r.json()["clients"][0]["crm_client_id"]
    stripe = hub.connections.create(v.id, "stripe", credentials={"secret_key": "sk_test_x"},
                                    base_url="http://127.0.0.1:9/stripe")
    cases: list[tuple[str, str, dict[str, Any] | None]] = [
        ("post", "/webhooks/honeybook/ab%00cd", {}),
        ("post", f"/webhooks/stripe/{stripe.id}%01", {}),
        ("get", "/api/crm/clients/ab%00cd", None),
        ("get", "/api/crm/clients?q=a%00b", None),
        ("get", "/api/crm/clients?q=a%1bb", None),
        ("get", "/api/payments/transactions?bookingRef=b%00", None),
        ("patch", f"/api/crm/clients/{cid}", {"company": "a\u0000b"}),
        ("patch", f"/api/crm/clients/{cid}", {"custom_fields": {"k\u0000": "v"}}),
        ("patch", f"/api/crm/clients/{cid}", {"custom_fields": {"k": ["ok", {"deep": "\u0007"}]}}),
        ("post", "/api/keys", {"name": "k\u0000"}),
        ("put", "/api/crm/policies", {"kind": "manual", "field": "email\u0000"}),
        ("post", "/api/crm/inquiries", {"inquiry_id": "i1", "first_name": "A", "partner": {"last_name": "\u0000"}}),
    ]
    for method, url, body in cases:
        kwargs: dict[str, Any] = {"headers": auth(key)}
        if body is not None:
            kwargs["json"] = body
        r = await api.request(method.upper(), url, **kwargs)
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_characters", (url, body, r.text)
    # text keeps its tabs and line breaks
    r = await api.patch(f"/api/crm/clients/{cid}", headers=auth(key), json={"company": "Golden\tHour\r\nStudio"})
    assert r.status_code == 200 and r.json()["company"] == "Golden\tHour\r\nStudio", r.text
    r = await api.get("/api/crm/clients", headers=auth(key), params={"q": "a\tb"})
    assert r.status_code == 200, r.text
    # a signed webhook whose event id holds a NUL (the signature is right, the value unstorable on PostgreSQL)
    raw = b'{"id": "evt_\\u0000x", "type": "charge.succeeded", "data": {"object": {}}}'
    secret = hub.connections.credentials(stripe)[WEBHOOK_SECRET]
    r = await api.post(f"/webhooks/stripe/{stripe.id}", content=raw, headers=StripeScheme.sign(raw, secret))
    if hub.db.engine.dialect.name == "postgresql":
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_data", r.text
    else:
        assert r.status_code == 200, r.text


async def test_amounts_and_integers_are_bounded(any_api, any_hub) -> None:  # type: ignore[no-untyped-def]
    """An amountMinor of 2**63 - 1 was accepted, after which every balance was a 503 on SQLite (its SUM
    overflowed); integers of 2**63 and more were 500s (amountMinor, sequence, after=, after_line=). Amounts are at
    most 99,999,999 minor units (Stripe's limit, the strictest gateway's) and every integer is bounded: 422."""
    from wedsync.domain.money import MAX_AMOUNT_MINOR

    api, hub = any_api, any_hub
    v, key = await _vendor(hub)
    h = {**auth(key), "Idempotency-Key": "k1"}
    base = {"bookingRef": "b1", "currency": "USD", "paymentMethod": "pm_card_visa"}
    for body in ({**base, "amountMinor": 9223372036854775807}, {**base, "amountMinor": 99999999999999999999},
                 {**base, "amountMinor": MAX_AMOUNT_MINOR + 1},
                 {**base, "amountMinor": 2500, "sequence": 9223372036854775808},
                 {**base, "amountMinor": 2500, "sequence": 1001}):
        r = await api.post("/api/payments/transactions", headers=h, json=body)
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", (body, r.text)
    # the largest amount passes validation (this vendor has no gateway yet: that is the refusal now)
    r = await api.post("/api/payments/transactions", headers=h, json={**base, "amountMinor": MAX_AMOUNT_MINOR})
    assert r.status_code != 500 and r.json()["error"]["code"] not in ("validation_error", "amount_too_large"), r.text
    for path in ("/api/payments/transactions/01m8xy342g4ay7173hm8hnk7jq/refunds",
                 "/api/payments/escrow/01m8xy342g4ay7173hm8hnk7jq/release"):
        r = await api.post(path, headers=auth(key), json={"amountMinor": 99999999999999999999})
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", (path, r.text)
    r = await api.get("/api/payments/balances", headers=auth(key))
    assert r.status_code == 200, r.text
    conn = hub.connections.create(v.id, "vsco-workspace", credentials={"api_key": "k"},
                                  base_url="http://127.0.0.1:9/vsco-workspace/api/v2")
    for url in (f"/api/connections/{conn.id}/webhook-events?after=99999999999999999999",
                f"/api/connections/{conn.id}/webhook-events?after=9223372036854775808",
                "/api/crm/imports/01m8xy342g4ay7173hm8hnk7jq/errors?after_line=99999999999999999999"):
        r = await api.get(url, headers=auth(key))
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", (url, r.text)
    r = await api.get(f"/api/connections/{conn.id}/webhook-events?after=9223372036854775807", headers=auth(key))
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_cursor", r.text  # in range, no such row
    for path in ("/api/crm/clients/01m8xy342g4ay7173hm8hnk7jq", "/api/crm/weddings/01m8xy342g4ay7173hm8hnk7jq",
                 "/api/crm/events/01m8xy342g4ay7173hm8hnk7jq"):
        r = await api.patch(path, headers=auth(key), json={"name" if "clients" not in path else "company": "x",
                                                           "expected_version": 2**63})
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", (path, r.text)


def test_the_domain_refuses_an_amount_over_the_gateways_limit_and_a_release_past_year_9999() -> None:
    from wedsync.domain.escrow import EscrowTerms, InvalidEscrow
    from wedsync.domain.money import MAX_AMOUNT_MINOR, InvalidAmount, require_positive

    assert require_positive(MAX_AMOUNT_MINOR) == MAX_AMOUNT_MINOR
    for bad in (MAX_AMOUNT_MINOR + 1, 2**63):
        with pytest.raises(InvalidAmount) as e:
            require_positive(bad)
        assert e.value.code == "amount_too_large"
    for days in (10**10, 3651, -1):  # timedelta(days=10**10) raised OverflowError: a 500
        with pytest.raises(InvalidEscrow):
            EscrowTerms.parse({"release": {"kind": "date", "weddingDate": "2027-06-12", "daysAfter": days}})
    with pytest.raises(InvalidEscrow):
        EscrowTerms.parse({"release": {"kind": "date", "weddingDate": "9999-12-30", "daysAfter": 5}})


async def test_collections_in_bodies_are_bounded(api, hub) -> None:  # type: ignore[no-untyped-def]
    """300,000 field mappings held SQLite's write lock for 43 s (every other vendor waited), 100,000 custom fields
    on one client too. Field mappings are at most 500, custom fields 200 (names of 1 to 200 characters, values of
    at most 10,000 characters as JSON), any object or array of a body 1,000 entries: 422 before any write."""
    import time

    v, key = await _vendor(hub)
    hb = hub.connections.create(v.id, "honeybook", credentials={})
    url = f"/api/crm/connections/{hb.id}/field-mappings"
    r = await api.post("/api/crm/inquiries", headers=auth(key),
                       json={"inquiry_id": "i0", "first_name": "Ana", "last_name": "Ruiz", "email": "ana@example.com"})
    cid = r.json()["clients"][0]["crm_client_id"]
    bad = [
        ("put", url, {"mappings": {f"Field {i}": "company" for i in range(501)}}, "too_long"),
        ("put", url, {"mappings": {f"F{i}": None for i in range(5000)}}, "too_many_entries"),
        ("put", url, {"mappings": {"x" * 201: "company"}}, "key_too_long"),
        ("put", url, {"mappings": {"": "company"}}, "string_too_short"),
        ("put", url, {"mappings": {"Referral": "c" * 201}}, "string_too_long"),
        ("patch", f"/api/crm/clients/{cid}", {"custom_fields": {f"k{i}": i for i in range(201)}}, "too_long"),
        ("patch", f"/api/crm/clients/{cid}", {"custom_fields": {f"k{i}": i for i in range(20_000)}},
         "too_many_entries"),
        ("patch", f"/api/crm/clients/{cid}", {"custom_fields": {"notes": "n" * 10_001}}, "value_too_large"),
        ("patch", f"/api/crm/clients/{cid}", {"custom_fields": {"tags": list(range(1001))}}, "too_many_entries"),
        ("post", "/api/connections", {"provider": "stripe", "settings": {f"s{i}": 1 for i in range(1001)}},
         "too_many_entries"),
    ]
    for method, path, body, error_type in bad:
        started = time.monotonic()
        r = await api.request(method.upper(), path, headers=auth(key), json=body)
        assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", (path, r.text[:300])
        assert error_type in {d["type"] for d in r.json()["error"]["details"]}, (path, r.text[:300])
        assert time.monotonic() - started < 5, path
    assert (await api.get(url, headers=auth(key))).json()["items"] == []  # nothing was written
    # the message names the field (it said "custom field {name!r} is over ...", the template unfilled)
    r = await api.patch(f"/api/crm/clients/{cid}", headers=auth(key), json={"custom_fields": {"notes": "n" * 10_001}})
    assert "custom field 'notes' is over 10000 characters" in r.json()["error"]["details"][0]["msg"], r.text[:300]
    r = await api.put(url, headers=auth(key), json={"mappings": {f"Field {i}": None for i in range(500)}})
    assert r.status_code == 200, r.text[:300]
    r = await api.patch(f"/api/crm/clients/{cid}", headers=auth(key),
                        json={"custom_fields": {f"k{i}": "v" for i in range(200)}})
    assert r.status_code == 200 and len(r.json()["custom_fields"]) >= 200, r.text[:300]


async def test_an_operator_acts_for_the_vendor_it_names_and_only_one_that_exists(api, hub) -> None:  # type: ignore[no-untyped-def]
    """``X-WedSync-Vendor`` was ignored by the two seed routes whose body names the vendor (``vendorId``), and a
    header naming no vendor was a 409 ``concurrent_change`` on writes and an empty 200 on reads. Now the header
    counts there too (naming another vendor than the body: 422 ``vendor_mismatch``), and an unknown vendor is a
    404 ``unknown_vendor`` everywhere."""
    a, key_a = await _vendor(hub)
    b = hub.tenancy.create_vendor("Studio B")
    _, op = hub.tenancy.create_key(None, operator=True)
    hub.connections.create(a.id, "vsco-workspace", credentials={"api_key": "k"},
                           base_url="http://127.0.0.1:9/vsco-workspace/api/v2")
    ghost = "01m8xy2xmcpy5mtqth75dmsyzz"
    for method, path, body in (("get", "/api/crm/clients", None), ("get", "/api/payments/transactions", None),
                               ("put", "/api/crm/policies", {"kind": "manual", "field": "email"}),
                               ("post", "/api/keys", {"name": "k"}),
                               ("post", "/api/integrations/crm/sync", {"crmProvider": "vsco-workspace"}),
                               ("post", "/api/integrations/payments/setup", {"gatewayConfig": {"primary": "stripe"}})):
        kwargs: dict[str, Any] = {"headers": {**auth(op), "X-WedSync-Vendor": ghost}}
        if body is not None:
            kwargs["json"] = body
        r = await api.request(method.upper(), path, **kwargs)
        assert r.status_code == 404 and r.json()["error"]["code"] == "unknown_vendor", (path, r.text)
    # the seed routes act for the header's vendor: B has no VSCO connection, A has one
    sync = {"crmProvider": "vsco-workspace", "syncType": "full"}
    r = await api.post("/api/integrations/crm/sync", headers={**auth(op), "X-WedSync-Vendor": b.id}, json=sync)
    assert r.status_code == 404 and r.json()["error"]["code"] != "unknown_vendor", r.text  # B's missing connection
    no_connection = r.json()["error"]["code"]
    r = await api.post("/api/integrations/crm/sync", headers={**auth(op), "X-WedSync-Vendor": b.id},
                       json={**sync, "vendorId": a.id})
    assert r.status_code == 422 and r.json()["error"]["code"] == "vendor_mismatch", r.text
    r = await api.post("/api/integrations/payments/setup", headers={**auth(op), "X-WedSync-Vendor": b.id},
                       json={"vendorId": a.id, "gatewayConfig": {"primary": "stripe"}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "vendor_mismatch", r.text
    r = await api.post("/api/integrations/crm/sync", headers=auth(op), json={**sync, "vendorId": b.id})
    assert r.json()["error"]["code"] == no_connection, r.text  # the body alone still names the vendor
    r = await api.post("/api/integrations/payments/setup", headers=auth(op), json={"gatewayConfig": {}})
    assert r.status_code == 422 and r.json()["error"]["code"] == "vendor_required", r.text
    # a vendor key: another vendor in the header or the body is a 404, as before
    r = await api.post("/api/integrations/crm/sync", headers={**auth(key_a), "X-WedSync-Vendor": b.id}, json=sync)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
    r = await api.post("/api/integrations/crm/sync", headers=auth(key_a), json={**sync, "vendorId": b.id})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text


async def test_a_cursor_naming_no_row_of_the_list_is_422_on_every_list(api, hub) -> None:  # type: ignore[no-untyped-def]
    """A well-formed cursor naming no row (a typo, another vendor's id) paged on silently from wherever it sorts
    on every list but the calendar's bookings: now 422 ``invalid_cursor`` on each (one helper,
    ``store/paging.cursor_row``), while a real cursor pages as before."""
    a, key_a = await _vendor(hub)
    b = hub.tenancy.create_vendor("Studio B")
    _, key_b = hub.tenancy.create_key(b.id)
    conn = hub.connections.create(a.id, "vsco-workspace", credentials={"api_key": "k"},
                                  base_url="http://127.0.0.1:9/vsco-workspace/api/v2")
    mine, theirs = [], []
    for key, ids in ((key_a, mine), (key_b, theirs)):
        for i in range(2):
            r = await api.post("/api/crm/inquiries", headers=auth(key),
                               json={"inquiry_id": f"i{i}", "first_name": f"Ana{i}", "email": f"a{i}@example.com"})
            assert r.status_code == 201, r.text
            ids.append(r.json()["clients"][0]["crm_client_id"])
    ghost = "01m8xy2xmcpy5mtqth75dmsyzz"
    lists = ["/api/crm/clients", "/api/crm/merges", "/api/crm/conflicts", "/api/crm/imports", "/api/crm/outbox",
             "/api/crm/weddings", "/api/payments/transactions", "/api/payments/ledger", "/api/calendar/bookings",
             f"/api/connections/{conn.id}/sync-runs", "/api/clients", "/api/weddings"]
    for path in lists:
        for cursor in (ghost, theirs[0]):
            r = await api.get(path, headers=auth(key_a), params={"after": cursor})
            assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_cursor", (path, cursor, r.text)
    r = await api.get(f"/api/connections/{conn.id}/webhook-events", headers=auth(key_a), params={"after": 12345})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_cursor", r.text
    # a real cursor still pages
    r = await api.get("/api/crm/clients", headers=auth(key_a), params={"limit": 1})
    first = r.json()["items"][0]["id"]
    r = await api.get("/api/crm/clients", headers=auth(key_a), params={"after": first, "limit": 1})
    assert r.status_code == 200 and [c["id"] for c in r.json()["items"]] == [x for x in sorted(mine) if x > first]


async def test_every_status_filter_is_checked(api, hub) -> None:  # type: ignore[no-untyped-def]
    """``?status=SUCCEEDED`` on transactions and ``?status=bogus`` on bookings answered an empty 200, as if there
    were none: 422 ``invalid_status`` now, as the webhook events' filter already did; the OpenAPI document lists
    each filter's values."""
    v, key = await _vendor(hub)
    conn = hub.connections.create(v.id, "vsco-workspace", credentials={"api_key": "k"},
                                  base_url="http://127.0.0.1:9/vsco-workspace/api/v2")
    cases = {"/api/payments/transactions": ("SUCCEEDED", "succeeded"), "/api/calendar/bookings": ("bogus", "active"),
             f"/api/connections/{conn.id}/webhook-events": ("done", "failed")}
    for path, (bad, good) in cases.items():
        r = await api.get(path, headers=auth(key), params={"status": bad})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_status", (path, r.text)
        r = await api.get(path, headers=auth(key), params={"status": good})
        assert r.status_code == 200 and r.json()["items"] == [], (path, r.text)
    r = await api.get("/api/crm/conflicts", headers=auth(key), params={"status": "bogus"})
    assert r.status_code == 422, r.text
    spec = (await api.get("/openapi.json")).json()["paths"]
    for path, op in (("/api/payments/transactions", "get"), ("/api/calendar/bookings", "get"),
                     ("/api/connections/{connection_id}/webhook-events", "get")):
        (param,) = [p for p in spec[path][op]["parameters"] if p["name"] == "status"]
        assert "enum" in str(param["schema"]), (path, param)


async def test_a_json_route_answers_415_to_a_body_of_another_type(api, hub) -> None:  # type: ignore[no-untyped-def]
    """A form (``curl -d``) or JSON sent as ``text/plain`` or without a type is not parsed by FastAPI: it was a 422
    ``validation_error`` about the body's type. Now 415 ``unsupported_media_type`` naming what the route takes."""
    v, key = await _vendor(hub)
    conn = hub.connections.create(v.id, "vsco-workspace", credentials={"api_key": "k"},
                                  base_url="http://127.0.0.1:9/vsco-workspace/api/v2")
    body = b'{"kind": "manual", "field": "email"}'
    for content_type in ("application/x-www-form-urlencoded", "text/plain", "text/plain; charset=utf-8",
                         "multipart/form-data; boundary=x", None):
        headers = {**auth(key), **({"Content-Type": content_type} if content_type else {})}
        r = await api.put("/api/crm/policies", headers=headers, content=body)
        assert r.status_code == 415 and r.json()["error"]["code"] == "unsupported_media_type", (content_type, r.text)
    r = await api.put("/api/crm/policies", headers=auth(key), data={"kind": "manual", "field": "email"})
    assert r.status_code == 415, r.text
    for content_type in ("application/json", "application/json; charset=utf-8", "application/merge-patch+json"):
        r = await api.put("/api/crm/policies", headers={**auth(key), "Content-Type": content_type}, content=body)
        assert r.status_code == 200, (content_type, r.text)
    # no body at all is no media type to refuse (the route's own validation answers); the CSV upload takes its own
    r = await api.patch(f"/api/connections/{conn.id}", headers=auth(key))
    assert r.status_code == 422 and r.json()["error"]["code"] == "validation_error", r.text
    r = await api.post("/api/crm/imports?layout=honeybook", headers={**auth(key), "Content-Type": "text/csv"},
                       content=b"First Name,Last Name,Email\nAna,Ruiz,ana@example.com\n")
    assert r.status_code == 202, r.text
    spec = (await api.get("/openapi.json")).json()
    assert "415" in spec["paths"]["/api/crm/policies"]["put"]["responses"]


async def test_every_list_in_the_document_refuses_a_cursor_naming_no_row(api, hub) -> None:  # type: ignore[no-untyped-def]
    """Every GET route of ``/openapi.json`` taking ``after`` (found in the document, so a list added later is
    covered too): a well-formed id naming no row is 422 ``invalid_cursor``, not a page from wherever it sorts."""
    v, key = await _vendor(hub)
    _, op = hub.tenancy.create_key(None, operator=True)
    conn = hub.connections.create(v.id, "vsco-workspace", credentials={"api_key": "k"},
                                  base_url="http://127.0.0.1:9/vsco-workspace/api/v2")
    ghost = "01m8xy2xmcpy5mtqth75dmsyzz"
    doc = (await api.get("/openapi.json")).json()
    checked: list[str] = []
    failed: list[tuple[str, int, str]] = []
    for path, ops in doc["paths"].items():
        get = ops.get("get")
        if not get or not any(p["name"] == "after" and p["in"] == "query" for p in get.get("parameters", [])):
            continue
        after = next(p for p in get["parameters"] if p["name"] == "after")
        if after.get("schema", {}).get("anyOf", [{}])[0].get("type") == "integer" or \
                after.get("schema", {}).get("type") == "integer":
            continue  # integer cursors (webhook events, import errors): covered by their own tests
        url = path.replace("{connection_id}", conn.id)
        if "{" in url:
            continue
        r = await api.get(url, headers=auth(op) if path == "/api/vendors" else auth(key), params={"after": ghost})
        checked.append(path)
        if r.status_code != 422 or r.json()["error"]["code"] != "invalid_cursor":
            failed.append((path, r.status_code, r.text[:200]))
    assert not failed, failed
    assert len(checked) >= 20, checked
