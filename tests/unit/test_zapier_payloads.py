"""Zapier-style hook payloads: each product's field names and their variants, both event kinds, form and JSON
bodies, garbage, and the outbound Create Project payload read back as its own echo."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime

import pytest

from wedsync.connectors.channels.csv_layouts import client_hash_id, parse_csv
from wedsync.connectors.channels.zapier import PROVIDERS, create_project_payload, parse_zap_event
from wedsync.connectors.webhooks import ZapierScheme
from wedsync.domain.crm import ClientRecord, WeddingRecord
from wedsync.errors import InvalidInput


def body(**fields: object) -> bytes:
    return json.dumps(fields).encode()


def test_honeybook_client_created() -> None:
    ev = parse_zap_event("honeybook", body(event="Client Created", event_id="hb-evt-1", client_id="5f0c1",
                                           first_name="Zoë", last_name="Müller", email="ZOE@Example.com",
                                           phone_number="(415) 555-0134", created_at="2026-01-02T03:04:05Z",
                                           lead_source="Instagram"))
    assert ev.kind == "client.created" and ev.wedding is None
    assert ev.occurred_at == datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    c = ev.client
    assert c is not None and (c.first_name, c.last_name, c.email, c.phone) == (
        "Zoë", "Müller", "zoe@example.com", "+14155550134")
    # the same id a HoneyBook CSV export row of this person gets (the export has no id column)
    assert ev.remote_id == c.remote_id == client_hash_id("zoe@example.com", "Zoë", "Müller")
    assert c.custom_fields == {"lead_source": "Instagram", "honeybook_id": "5f0c1"}
    csv_row = next(parse_csv("First Name,Last Name,Email\nZoë,Müller,zoe@example.com\n".encode(), "honeybook"))
    assert csv_row.client is not None and csv_row.client.remote_id == c.remote_id


@pytest.mark.parametrize("keys", [
    {"Client Email": "ana@example.com", "Client First Name": "Ana", "Client Last Name": "Lima"},
    {"client__email": "ana@example.com", "client__first_name": "Ana", "client__last_name": "Lima"},
    {"client": {"email": "ana@example.com", "first_name": "Ana", "last_name": "Lima"}},
    {"Email Address": "ana@example.com", "Name": "Ana Lima"},
])
def test_key_variants_are_the_same_fields(keys: dict[str, object]) -> None:
    ev = parse_zap_event("17hats", body(event="new_contact", contact_id="881", **keys))
    assert ev.client is not None and (ev.client.first_name, ev.client.last_name, ev.client.email) == (
        "Ana", "Lima", "ana@example.com")
    assert ev.remote_id == "17h-881"


def test_project_booked_json_and_form_encoded_agree() -> None:
    fields = {"event": "New Project Booked", "project_id": "p-77", "project_name": "Ana & Bo Wedding",
              "project_date": "2026-09-12", "project_type": "Wedding", "project_location": "Villa Balbiano",
              "client_email": "ana@example.com", "client_first_name": "Ana", "client_last_name": "Lima",
              "booked_at": "2026-01-05 10:00:00", "guest_count": "120"}
    from urllib.parse import urlencode

    a = parse_zap_event("honeybook", json.dumps(fields).encode(), "application/json")
    b = parse_zap_event("honeybook", urlencode(fields).encode(), "application/x-www-form-urlencoded")
    assert a == b
    assert a.kind == "project.booked" and a.remote_id == "hb-job-p-77"
    w = a.wedding
    assert w is not None and (w.name, w.event_date, w.job_type, w.guest_count, w.stage) == (
        "Ana & Bo Wedding", date(2026, 9, 12), "Wedding", 120, "booked")
    assert w.custom_fields["venue"] == "Villa Balbiano"
    assert a.client is not None and w.client_remote_ids == [a.client.remote_id]
    assert a.occurred_at == datetime(2026, 1, 5, 10, tzinfo=UTC)


def test_kind_is_inferred_without_an_event_field() -> None:
    ev = parse_zap_event("iris-works", body(job_id="12", job_name="Elopement", event_date="2026-10-01",
                                            contact_id="4", contact_email="x@example.com"))
    assert ev.kind == "project.booked" and ev.remote_id == "iw-job-12"
    assert ev.client is not None and ev.client.remote_id == "iw-4"
    assert parse_zap_event("iris-works", body(contact_id="4", first_name="Jo")).kind == "client.created"


def test_studio_ninja_day_first_and_au_numbers() -> None:
    ev = parse_zap_event("studio-ninja", b"job_id=99&job_name=Wedding&job_date=03/04/2026&client_name=Ana Lima"
                                         b"&client_email=ana@example.com.au&client_phone=0412 345 678",
                         "application/x-www-form-urlencoded")
    assert ev.wedding is not None and ev.wedding.event_date == date(2026, 4, 3)
    assert ev.client is not None and ev.client.phone == "+61412345678"


def test_zapier_list_wrapper_and_bad_values_are_kept_as_sent() -> None:
    ev = parse_zap_event("17hats", json.dumps([{"contact_id": 5, "first_name": "Kim", "email": "not-mail",
                                                "phone": "12", "created_at": "yesterday-ish"}]).encode())
    assert ev.client is not None and ev.client.email is None and ev.client.phone is None
    # not identity and not written back, but not lost either: a hook has no row report to warn in
    assert ev.client.custom_fields == {"email_as_sent": "not-mail", "phone_as_sent": "12"}
    assert ev.occurred_at is None and ev.remote_id == "17h-5"


def test_a_hook_date_without_its_day_is_left_out_not_made_up() -> None:
    body = {"event": "project.booked", "project_id": "p1", "project_name": "Kim & Al", "event_date": "June 2027",
            "created_at": "10:30", "client_email": "kim@example.com", "client_first_name": "Kim"}
    ev = parse_zap_event("17hats", json.dumps(body).encode())
    assert ev.wedding is not None and ev.wedding.event_date is None and ev.occurred_at is None
    ev = parse_zap_event("17hats", json.dumps({**body, "event_date": "June 14, 2027"}).encode())
    assert ev.wedding is not None and str(ev.wedding.event_date) == "2027-06-14"


@pytest.mark.parametrize("raw", [
    b"", b"   ", b"garbage", b"[1, 2]", b"{not json", b'"a string"', b"\xff\xfe\x00\x01",
    b'{"event": "invoice.paid", "email": "a@example.com"}', b"{}", b'{"phone": "+12025550101"}',
    b'{"event": "project.booked"}',
])
def test_garbage_is_bad_payload(raw: bytes) -> None:
    with pytest.raises(InvalidInput) as info:
        parse_zap_event("honeybook", raw)
    assert info.value.code == "bad_payload"


def test_unknown_provider_and_content_type() -> None:
    with pytest.raises(InvalidInput) as info:
        parse_zap_event("dubsado-x", b"{}")
    assert info.value.code == "unknown_provider"
    with pytest.raises(InvalidInput) as info:
        parse_zap_event("17hats", b"<xml/>", "application/xml")
    assert info.value.code == "bad_payload"


def test_every_zapier_provider_has_a_payload_format() -> None:
    assert set(PROVIDERS) == {"honeybook", "17hats", "studio-ninja", "iris-works"}


def test_create_project_payload_comes_back_as_its_own_echo() -> None:
    client = ClientRecord(remote_id="c1", first_name="Ana", last_name="Lima", email="ana@example.com",
                          phone="+14155550134;ext=12")
    wedding = WeddingRecord(remote_id="w1", name="Ana & Bo", event_date=date(2026, 9, 12), job_type="Wedding",
                            guest_count=80, custom_fields={"venue": "Loft"})
    payload = create_project_payload(client, wedding, "wsk_0123")
    assert payload["idempotency_key"] == payload["wedsync_reference"] == "wsk_0123"
    raw = json.dumps({**payload, "event": "project.booked", "project_id": "hb1"}).encode()
    ev = parse_zap_event("honeybook", raw)
    assert ev.wedding is not None and (ev.wedding.name, ev.wedding.event_date, ev.wedding.guest_count) == (
        "Ana & Bo", date(2026, 9, 12), 80)
    assert ev.client is not None and ev.client.phone == "+14155550134"


def test_scheme_and_parser_agree_on_a_signed_hook() -> None:
    raw = body(event="client.created", event_id="evt-9", client_id="c9", email="k@example.com", first_name="K")
    verified = ZapierScheme().verify(raw, ZapierScheme.sign(raw, "s3cret"), "s3cret")
    assert verified.event_id == "evt-9" and verified.event_type == "client.created"
    assert parse_zap_event("honeybook", raw).kind == "client.created"


@pytest.mark.parametrize("slug", ["honeybook", "17hats", "studio-ninja", "iris-works"])
def test_product_connectors_read_hooks_and_files(slug: str) -> None:
    from wedsync.connectors.channels.csv_layouts import LAYOUTS
    from wedsync.connectors.registry import CONNECTORS

    connector = CONNECTORS[slug](allow_private_urls=True) if slug == "honeybook" else CONNECTORS[slug]()  # type: ignore[call-arg]
    event = connector.parse_hook(body(event="client.created", email="ana@example.com", first_name="Ana"))  # type: ignore[attr-defined]
    assert event.kind == "client.created" and event.client is not None
    data = b"".join(connector.export_csv([(event.client, None)]))  # type: ignore[attr-defined]
    assert data.startswith(",".join(LAYOUTS[slug].headers).encode())
    (row,) = connector.parse_csv(data)  # type: ignore[attr-defined]
    assert row.client is not None and row.client.email == "ana@example.com"


# --- probe findings: event_type as a project type, country codes, hook and CSV parse alike ------------------


def test_event_type_naming_a_project_type_is_the_project_type_not_the_event() -> None:
    """17hats' booking trigger sends ``event_type: "Wedding"`` (the project's type): it was read as the hook's
    event and the hook refused (422 "unknown event 'Wedding'")."""
    raw = body(event_id="e1", project_id="P77", project_name="Lee Wedding", event_date="08/21/2027",
               event_type="Wedding", contact_id="2001", first_name="Mina", email="mina.lee@example.com")
    ev = parse_zap_event("17hats", raw)
    assert ev.kind == "project.booked" and ev.wedding is not None
    assert (ev.wedding.remote_id, ev.wedding.job_type, ev.wedding.event_date) == (
        "17h-job-P77", "Wedding", date(2027, 8, 21))
    assert ZapierScheme().verify(raw, ZapierScheme.sign(raw, "s"), "s").event_id == "e1"


def test_event_type_naming_an_event_is_the_event_and_an_explicit_event_wins() -> None:
    ev = parse_zap_event("17hats", body(event_type="Client Created", contact_id="1", first_name="Ana",
                                        email="ana@example.com", project_name="Ana Wedding"))
    assert ev.kind == "client.created"  # project fields present, but the event says what it is
    ev = parse_zap_event("17hats", body(event_type="project.booked", project_id="9", email="ana@example.com"))
    assert ev.kind == "project.booked" and ev.wedding is not None and ev.wedding.job_type is None
    ev = parse_zap_event("17hats", body(event="new_contact", event_type="Wedding", contact_id="1",
                                        email="ana@example.com", project_name="Ana Wedding"))
    assert ev.kind == "client.created"
    with pytest.raises(InvalidInput) as err:  # an explicit event we do not know is still refused
        parse_zap_event("17hats", body(event="invoice.paid", event_type="Wedding", email="ana@example.com"))
    assert err.value.code == "bad_payload"


@pytest.mark.parametrize(("typed", "stored"), [
    ("Brazil", "BR"), ("USA", "US"), ("United States", "US"), ("br", "BR"), ("Deutschland", "DE"),
    ("  Atlantis  ", "Atlantis"),  # not a country we know: kept as typed, never dropped
])
def test_hook_country_is_stored_as_the_iso_code_workspace_uses(typed: str, stored: str) -> None:
    ev = parse_zap_event("17hats", body(event="new_contact", contact_id="1", first_name="Ana",
                                        email="ana@example.com", city="Recife", country=typed))
    assert ev.client is not None and ev.client.address == {"city": "Recife", "country": stored}


def test_hook_and_csv_read_a_one_cell_name_and_a_guest_count_alike() -> None:
    """Studio Ninja's "Nguyen, Linh" was first "Nguyen," last "Linh" from a hook (Linh Nguyen from its CSV);
    Iris Works' "1,150" guests were dropped from a hook (1150 from its CSV)."""
    ev = parse_zap_event("studio-ninja", body(event="client.created", client_id="44", client_name="Nguyen, Linh",
                                              client_email="linh@example.com"))
    row = next(parse_csv(b"Client ID,Client Name,Email Address\n44,\"Nguyen, Linh\",linh@example.com\n",
                         "studio-ninja"))
    assert ev.client is not None and row.client is not None
    assert (ev.client.first_name, ev.client.last_name) == (row.client.first_name, row.client.last_name) == (
        "Linh", "Nguyen")
    ev = parse_zap_event("iris-works", body(event="project.booked", job_id="7", job_name="Big Day",
                                            contact_id="3", primary_email="a@example.com", guest_count="1,150"))
    row = next(parse_csv(b"Contact Id,Last Name,Primary Email,Job Name,Guest Count\n3,Ames,a@example.com,"
                         b"Big Day,\"1,150\"\n", "iris-works"))
    assert ev.wedding is not None and row.wedding is not None
    assert ev.wedding.guest_count == row.wedding.guest_count == 1150
    ev = parse_zap_event("iris-works", body(event="project.booked", job_id="7", primary_email="a@example.com",
                                            guest_count="about 150"))
    assert ev.wedding is not None and ev.wedding.guest_count is None
    assert ev.wedding.custom_fields["guest_count_as_sent"] == "about 150"  # no row report: kept as sent


def test_a_hook_project_date_is_read_from_a_timestamp_and_else_kept_as_sent() -> None:
    """A project date the hook could not read vanished without a trace (a guest count, an e-mail or a phone that
    cannot be read is kept as sent; found by a probe): it is kept as ``project_date_as_sent``. A unix timestamp
    (seconds or milliseconds, as ``created_at`` is read) is the day it names in UTC."""
    base = {"event": "project.booked", "project_id": "p1", "project_name": "Kim & Al",
            "client_email": "kim@example.com", "client_first_name": "Kim"}
    for stamp in ("1813017600000", "1813017600"):
        ev = parse_zap_event("honeybook", json.dumps({**base, "project_date": stamp}).encode())
        assert ev.wedding is not None and ev.wedding.event_date == date(2027, 6, 15)
        assert "project_date_as_sent" not in ev.wedding.custom_fields
    ev = parse_zap_event("17hats", json.dumps({**base, "event_date": "June 2027"}).encode())
    assert ev.wedding is not None and ev.wedding.event_date is None
    assert ev.wedding.custom_fields["project_date_as_sent"] == "June 2027"


@pytest.mark.parametrize("raw", [
    json.dumps([{"event": "client.created", "event_id": "evt-7", "email": "k@example.com"}]).encode(),
    json.dumps({"Event ID": "evt-7", "event": "client.created", "email": "k@example.com"}).encode(),
    b"\xef\xbb\xbf" + json.dumps({"event_id": "evt-7", "email": "k@example.com"}).encode(),
    b"Event-ID=evt-7&event=client.created&email=k%40example.com",
])
def test_the_scheme_reads_the_event_id_wherever_the_parse_reads_fields(raw: bytes) -> None:
    """The scheme took the event id from the exact key ``event_id`` of a JSON object only: a hook sent as a list
    of one (Zapier's "send as list"), with a BOM, or with the key spelled ``Event ID`` was parsed and stored,
    but deduplicated by its body digest, so the same event sent again in another shape was stored twice."""
    assert ZapierScheme().verify(raw, ZapierScheme.sign(raw, "s3cret"), "s3cret").event_id == "evt-7"
    assert parse_zap_event("honeybook", raw).kind == "client.created"


def test_a_list_of_several_events_is_refused_with_why() -> None:
    raw = json.dumps([{"event_id": "a", "email": "a@example.com"}, {"event_id": "b", "email": "b@example.com"}])
    with pytest.raises(InvalidInput) as exc:
        ZapierScheme().verify(raw.encode(), ZapierScheme.sign(raw.encode(), "s"), "s")
    assert exc.value.code == "bad_payload" and "one event per request" in exc.value.message


@pytest.mark.parametrize(("typed", "first", "last"), [
    ("Anna & Ben Carter", "Anna & Ben", "Carter"),
    ("Anna and Ben Carter", "Anna and Ben", "Carter"),
    ("Anna & Ben", "Anna & Ben", None),
    ("José Ortega y Gasset", "José", "Ortega y Gasset"),
    ("Mary-Jane O'Neil Watson", "Mary-Jane", "O'Neil Watson"),
    ("Nguyen, Linh", "Linh", "Nguyen"),
])
def test_a_couples_one_cell_name_keeps_the_family_name_as_the_last_name(typed: str, first: str,
                                                                        last: str | None) -> None:
    """A couple in one field, as HoneyBook's and Studio Ninja's client names often are, had "& Ben Carter" as its
    last name; the hook and the CSV row read it alike."""
    ev = parse_zap_event("honeybook", body(event="client.created", name=typed, email="ab@example.com"))
    row = next(parse_csv(f'Client ID,Client Name,Email Address\n44,"{typed}",ab@example.com\n'.encode(),
                         "studio-ninja"))
    assert ev.client is not None and row.client is not None
    assert (ev.client.first_name, ev.client.last_name) == (row.client.first_name, row.client.last_name) == (
        first, last)


@pytest.mark.parametrize("provider", sorted(PROVIDERS))
def test_values_wider_than_the_store_keeps_are_kept_as_sent(provider: str) -> None:
    """A hook's project status of 34 characters, or a first name of 250, made the hook's write fail on PostgreSQL
    (value too long for type character varying): the hook failed and its client and project never landed. Such a
    value is kept as sent in the record's custom fields (a hook has no report to warn in), like an e-mail that is
    not one, and never reaches a column narrower than it (ids too: a project id too long gives a hash id)."""
    from wedsync.connectors.channels.csv_layouts import FIELD_WIDTHS

    long_stage = "Proposal Sent - Awaiting Signature"
    event = parse_zap_event(provider, body(
        event="project.booked", event_id="e1", project_id="9" * 130, project_name="P" * 401, project_date="2027-06-14",
        status=long_stage, project_stage=long_stage, job_status=long_stage, client_id="C1", contact_id="C1",
        client_first_name="N" * 250, first_name="N" * 250, client_last_name="Lima", last_name="Lima",
        client_email="ana@example.com", email="ana@example.com", primary_email="ana@example.com",
        client_name="N" * 250 + " Lima"))
    client, wedding = event.client, event.wedding
    assert client is not None and wedding is not None
    assert client.first_name is None and client.last_name == "Lima" and client.email == "ana@example.com"
    assert client.custom_fields["first_name_as_sent"] == "N" * 250
    assert (wedding.name, wedding.stage) == (None, "booked") and len(wedding.remote_id) <= FIELD_WIDTHS["project_id"]
    assert wedding.custom_fields["stage_as_sent"] == long_stage
    assert wedding.custom_fields["project_name_as_sent"] == "P" * 401
    for value, width in ((client.remote_id, 128), (wedding.job_type, 200), (client.display_name, 400)):
        assert value is None or len(value) <= width
