"""Light Blue: push-only; WedSync inquiries sent to the vendor's Light Blue Inbox by the documented form POST.

``POST https://online.lightbluesoftware.com/api.php`` (HTTPS only), form-encoded UTF-8 with ``key`` (the
vendor's API key), ``type=contact form`` and the documented parameters (``ContactNameFirst``,
``ContactNameLast``, ``ContactEmail``, ``ContactPhoneMobile``, ``ContactSource``, ``Message``, ...). The
answer is a status code and, on error, a summary: ``0`` success, ``-3`` no valid parameters, ``-4`` duplicate,
``-20`` HTTPS required (documented); other negative codes are treated as a rejected key or request.

Idempotency: Light Blue checks duplicates on ``ID`` + ``Source`` when given, so every push sends ``Source``
``WedSync`` and ``ID`` = our reference (from the outbox row committed before the call); a retry after a lost
answer then gets ``-4``, which is success for us. There is nothing to read back: no listing, no updates.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

import httpx

from wedsync.connectors.base import Capabilities, Channel, Connector, CredentialField
from wedsync.connectors.errors import Fatal, ReauthRequired, SchemaMismatch
from wedsync.connectors.http import ProviderClient
from wedsync.domain.crm import ClientRecord, WeddingRecord
from wedsync.errors import InvalidInput

SOURCE = "WedSync"
SOURCE_API_VERSION = "1"
_STATUS = re.compile(r"^\s*(-?\d+)\s*[:\-]?\s*(.*)$", re.S)


@dataclass(frozen=True, slots=True)
class LightBlueResult:
    status: int  # 0, or -4 when Light Blue already had this ID
    duplicate: bool
    reference: str
    message: str


def inquiry_form(client: ClientRecord, wedding: WeddingRecord | None, *, reference: str,
                 message: str | None = None) -> dict[str, str]:
    """The documented contact-form parameters for one inquiry (without ``key``)."""
    fields: dict[str, str] = {"type": "contact form", "Source": SOURCE, "SourceAPIVersion": SOURCE_API_VERSION,
                              "ID": reference}
    if client.first_name:
        fields["ContactNameFirst"] = client.first_name
    if client.last_name:
        fields["ContactNameLast"] = client.last_name
    if not client.first_name and not client.last_name and client.display_name:
        fields["ContactNameFull"] = client.display_name
    if client.email:
        fields["ContactEmail"] = client.email
    if client.phone:
        fields["ContactPhoneMobile"] = client.phone.replace(";ext=", " ext. ")
    lead_source = (client.custom_fields or {}).get("lead_source")
    fields["ContactSource"] = str(lead_source) if lead_source else SOURCE
    lines = [message.strip()] if message and message.strip() else []
    if wedding is not None:  # the documented way to pass what has no parameter: combined into Message
        details = [("Event", wedding.name), ("Event date", wedding.event_date.isoformat() if wedding.event_date
                                            else None),
                   ("Type", wedding.job_type), ("Venue", (wedding.custom_fields or {}).get("venue")),
                   ("Guests", str(wedding.guest_count) if wedding.guest_count is not None else None)]
        lines.extend(f"{label}: {value}" for label, value in details if value)
    lines.append(f"Sent by WedSync (reference {reference})")
    fields["Message"] = "\n".join(lines)
    return fields


class LightBlueConnector(Connector):
    slug: ClassVar[str] = "light-blue"
    display_name: ClassVar[str] = "Light Blue"
    channel: ClassVar[Channel] = Channel.PUSH_ONLY
    capabilities: ClassVar[Capabilities] = Capabilities(
        category="crm",
        read=(),
        write=("inquiries",),
        webhooks=(),
        incremental=(),
        notes="Push-only: the documented HTTPS form POST to api.php (key, type=contact form, Contact*/Message "
        "parameters) puts each WedSync inquiry in the vendor's Light Blue Inbox, where the vendor turns it into "
        "a shoot or contact. ID + Source make a retry a reported duplicate (-4), never a second inquiry. "
        "Light Blue offers no API to read, update or delete anything.",
    )
    credential_fields: ClassVar[tuple[CredentialField, ...]] = (
        CredentialField("api_key", "Light Blue API key (My Account page, near the bottom)"),
    )
    default_base_url: ClassVar[str | None] = "https://online.lightbluesoftware.com"
    docs_url: ClassVar[str | None] = (
        "https://www.lightbluesoftware.com/help/help-resources/sending-data-directly-to-the-light-blue-api-via-http-post/")

    def __init__(self, *, api_key: str, base_url: str | None = None, account_key: str = "default",
                 timeout: float = 30.0, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._key = api_key
        self.client = ProviderClient(self.slug, self.normalize_base_url(base_url or self.default_base_url or ""),
                                     account_key=account_key, timeout=timeout, transport=transport)

    @classmethod
    def normalize_base_url(cls, base_url: str) -> str:
        """The site the endpoint ``/api.php`` is under: a base URL given as the endpoint itself, as Light Blue's
        documentation and ``specs/README.md`` write it (``https://online.lightbluesoftware.com/api.php``), is
        the same connection (every push had gone to ``.../api.php/api.php``, 404, for good)."""
        url = base_url.rstrip("/")
        if url.lower().endswith("/api.php"):
            url = url[: -len("/api.php")]
        return url

    async def aclose(self) -> None:
        await self.client.aclose()

    async def push_inquiry(self, client: ClientRecord, wedding: WeddingRecord | None = None, *,
                           reference: str, message: str | None = None) -> LightBlueResult:
        """Send one inquiry to the vendor's Light Blue Inbox; a duplicate (same reference) is success."""
        if not reference or len(reference) > 100:
            raise InvalidInput("a reference of 1..100 characters is required", code="invalid_input")
        if not (client.email or client.phone or client.first_name or client.last_name or client.display_name):
            raise InvalidInput("an inquiry needs the client's name, e-mail or phone", code="invalid_input")
        form = {"key": self._key, **inquiry_form(client, wedding, reference=reference, message=message)}
        response = await self.client.request("POST", "/api.php", data=form, idempotency_key=reference)
        text = response.text
        match = _STATUS.match(text)
        if match is None:
            raise SchemaMismatch(f"api.php answered without a status code: {text[:80]!r}", provider=self.slug,
                                 http_status=response.status_code)
        status, summary = int(match.group(1)), " ".join(match.group(2).split())[:200]
        if status in (0, -4):
            return LightBlueResult(status, status == -4, reference, summary)
        if status in (-1, -2):
            raise ReauthRequired(f"Light Blue rejected the API key ({status}: {summary})", provider=self.slug,
                                 http_status=response.status_code)
        raise Fatal(f"Light Blue refused the inquiry ({status}: {summary})", provider=self.slug,
                    http_status=response.status_code, code="provider_rejected")
