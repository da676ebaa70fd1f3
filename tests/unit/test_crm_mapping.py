"""Mapping VSCO Workspace entities onto unified records, and normalization."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from wedsync.connectors.crm.vsco_workspace import map_contact, map_job
from wedsync.connectors.errors import SchemaMismatch
from wedsync.domain.crm import ClientRecord, normalize_email, normalize_phone


def test_map_person() -> None:
    rec = map_contact({
        "id": "01h35ccwymj5ctckp8px1azhg6", "kind": "person", "firstName": "Zoë", "lastName": "O'Brien-Núñez",
        "email": " Zoe.OBrien@Example.COM ",
        "cellPhone": {"formatted": "(415) 555-0132", "e164": "+14155550132", "extension": None, "countryCode": "us"},
        "mailingAddress": {"city": "San Francisco", "country": "US"},
        "customFields": [{"fieldId": "01h35ccwymj5ctckp8px1azhg7", "value": "Golden Gate"}],
        "created": "2020-08-01T17:32:32Z", "modified": "2021-01-02T03:04:05Z",
    })
    assert rec.display_name == "Zoë O'Brien-Núñez"
    assert rec.email == "zoe.obrien@example.com"
    assert rec.phone == "+14155550132"
    assert rec.custom_fields == {"01h35ccwymj5ctckp8px1azhg7": "Golden Gate"}
    assert rec.remote_modified_at == datetime(2021, 1, 2, 3, 4, 5, tzinfo=UTC)


def test_phone_objects() -> None:
    home = {"e164": "+442079460958", "extension": 12}
    assert map_contact({"id": "a", "homePhone": home}).phone == "+442079460958;ext=12"
    work = {"formatted": "020 7946 0958", "countryCode": "gb"}
    assert map_contact({"id": "a", "workPhone": work}).phone == "+442079460958"
    assert map_contact({"id": "a", "cellPhone": {"formatted": None, "e164": None}}).phone is None
    with pytest.raises(SchemaMismatch):
        map_contact({"id": "a", "cellPhone": 5551234})


def test_touch_is_not_a_change() -> None:
    a = map_contact({"id": "x", "firstName": "A", "modified": "2021-01-01T00:00:00Z"})
    b = map_contact({"id": "x", "firstName": "A", "modified": "2022-01-01T00:00:00Z"})
    c = map_contact({"id": "x", "firstName": "B", "modified": "2022-01-01T00:00:00Z"})
    assert a.content_hash() == b.content_hash() != c.content_hash()


def test_map_job() -> None:
    rec = map_job({"id": "j1", "name": "Ana & Luis", "eventDate": "2027-06-12", "stage": "booked",
                   "guestCount": 140, "closed": False})
    assert rec.event_date == date(2027, 6, 12) and rec.guest_count == 140 and rec.stage == "booked"


def test_garbage_raises_schema_mismatch() -> None:
    with pytest.raises(SchemaMismatch):
        map_contact({"firstName": "no id"})
    with pytest.raises(SchemaMismatch):
        map_job({"id": "j", "eventDate": "not-a-date"})
    with pytest.raises(SchemaMismatch):
        map_contact({"id": "c", "modified": 12345})


@pytest.mark.parametrize(("raw", "region", "expected"), [
    ("+44 20 7946 0958", None, "+442079460958"),
    ("020 7946 0958", "GB", "+442079460958"),
    ("415.555.0132", "US", "+14155550132"),
    ("(415) 555-0132 ext. 12", "US", "+14155550132;ext=12"),
    ("not a phone", "US", "not a phone"),
    ("", "US", None),
    # written without a country and impossible in the default one: kept as typed, no invented country
    ("030 1234567", None, "030 1234567"),          # Berlin, typed nationally: not "+10301234567"
    ("555-123-4567", "US", "555-123-4567"),        # a North American exchange never starts with 1
    ("030 1234567", "DE", "+49301234567"),         # with the right default country it is a number
    ("1 (415) 555-0132", "US", "+14155550132"),    # the national prefix is still understood
    ("011 44 20 7946 0958", "US", "+442079460958"),  # so is the US international prefix
    ("+1 030 1234567", "US", "+10301234567"),      # an explicit country is the sender's word
])
def test_normalize_phone(raw: str, region: str | None, expected: str | None) -> None:
    assert normalize_phone(raw, region) == expected


def test_normalize_email() -> None:
    assert normalize_email("  A@B.CO ") == "a@b.co"
    assert normalize_email("") is None


@pytest.mark.parametrize(("country", "sent"), [("BR", "BR"), ("br", "BR"), ("Brazil", "BR"),
                                              ("United States", "US"), ("USA", "US")])
def test_the_address_country_goes_to_workspace_as_its_iso_code(country: str, sent: str) -> None:
    """Workspace's ``Address.country`` is two letters: a country stored as typed ("Brazil", a client accepted
    from a CSV before countries were normalized) was left out of the body, erasing the contact's country."""
    from wedsync.connectors.crm.vsco_workspace import contact_body

    client = ClientRecord("c1", first_name="Bruna", address={"city": "Recife", "country": country})
    assert contact_body(client)["address"] == {"city": "Recife", "country": sent}
    assert contact_body(client, fields={"address"})["address"]["country"] == sent


def test_an_unknown_country_is_refused_by_the_workspace_write_not_dropped() -> None:
    from wedsync.connectors.crm.vsco_workspace import contact_body
    from wedsync.connectors.errors import Fatal

    client = ClientRecord("c1", first_name="Bruna", address={"city": "Poseidonis", "country": "Atlantis"})
    with pytest.raises(Fatal) as refused:
        contact_body(client, fields={"address"})
    assert refused.value.code == "unsupported_country" and "Atlantis" in str(refused.value)
    assert "address" not in contact_body(client, fields={"email"})  # a write of other fields is not held up
