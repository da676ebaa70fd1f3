"""Response bodies of the routes (Pydantic v2), so that ``/openapi.json`` describes what the API answers.

Every model here declares each key its route answers and no other (``additionalProperties: false``): a key a
service adds without its model is a response validation error (a 500 in the tests that read the route), never a
key silently dropped or an undocumented one; ``tests/integration/test_openapi_responses.py`` checks the real
answers of every GET route against the published schema, and holds every write route's 2xx JSON body to the
same rule (its keys listed), bar the few exceptions it names. Times the services already render as ISO 8601 text
are declared as text of format ``date-time`` (or ``date``), so that they are answered exactly as before.
Free-form JSON the vendor or a provider supplies (custom fields, settings, payloads, evidence, reports' details)
stays an open object."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from wedsync.api.schemas import Out, Page

#: An instant as ISO 8601 text with its UTC offset (rendered by the service).
IsoTime = Annotated[str, Field(json_schema_extra={"format": "date-time"})]
#: A calendar date as ISO 8601 text.
IsoDate = Annotated[str, Field(json_schema_extra={"format": "date"})]
Json = dict[str, Any]


# -- system, providers, OAuth ------------------------------------------------------------------------------
class HealthOut(Out):
    status: Literal["ok"]


class ReadyOut(Out):
    status: Literal["ok", "unavailable"]
    database: str = Field(description="the store's dialect when ok, else the error's type")


class CapabilitiesOut(Out):
    category: str
    read: list[str]
    write: list[str]
    webhooks: list[str]
    incremental: list[str]
    notes: str


class ProviderOut(Out):
    provider: str
    name: str
    status: Literal["available", "not_built"]
    channel: str
    capabilities: CapabilitiesOut
    credentials: list[str]
    docs: str | None


class ProvidersOut(Out):
    providers: list[ProviderOut]


class AuthorizeUrlOut(Out):
    authorize_url: str


class OAuthConnectedOut(Out):
    connection_id: str
    provider: str
    status: str


class WebhookReceivedOut(Out):
    received: Literal[True]
    duplicate: bool = Field(description="the provider's event id was already in the inbox: acknowledged, dropped")
    event_id: str = Field(description="the provider's event id")


# -- CRM --------------------------------------------------------------------------------------------------
class CrmSyncRunOut(Out):
    """A sync run in the seed's SyncResult form, with the CRM counters."""

    id: str
    connection_id: str
    mode: str
    status: str
    merged: int
    conflicts: int
    echoes: int
    started_at: IsoTime | None
    finished_at: IsoTime | None
    since: IsoTime | None
    pages: int
    processed: int
    created: int
    updated: int
    unchanged: int
    deleted: int
    errors: int
    error_detail: str | None
    progress: Json
    syncId: str
    success: bool | None = Field(description="the run's outcome; null while it is queued or running")
    recordsProcessed: int
    recordsCreated: int
    recordsUpdated: int
    finished: bool
    nextSync: IsoTime | None = Field(description="the connection's next scheduled pull; null: none is scheduled")


class CrmClientOut(Out):
    """A unified client (one per person across every source)."""

    id: str
    kind: str
    first_name: str | None
    last_name: str | None
    display_name: str | None
    email: str | None
    phone: str | None
    company: str | None
    address: Json | None
    custom_fields: Json
    wedding_dates: list[IsoDate]
    source_connection_id: str | None
    source_provider: str | None
    field_sources: Json = Field(description="per field: the connection (c), provider (p), record (r) and time (at) "
                                            "of its last change")
    version: int
    created_at: IsoTime
    updated_at: IsoTime


class SourceRecordOut(Out):
    id: str
    connection_id: str
    provider: str
    remote_id: str
    first_name: str | None
    last_name: str | None
    email: str | None
    phone: str | None
    custom_fields: Json
    version: int
    remote_modified_at: IsoTime | None
    synced_at: IsoTime
    deleted_at: IsoTime | None


class ClientWeddingOut(Out):
    id: str
    connection_id: str
    remote_id: str
    name: str | None
    event_date: IsoDate | None
    stage: str | None
    custom_fields: Json
    version: int


class MergeOut(Out):
    id: str
    crm_client_id: str
    source_client_id: str
    connection_id: str
    rule: str
    score: float
    evidence: Json
    run_id: str | None
    created_at: IsoTime
    undone_at: IsoTime | None
    undone_to: str | None


class CrmConflictOut(Out):
    id: str
    crm_client_id: str
    source_client_id: str | None
    connection_id: str | None
    field: str
    base: Any
    local: Any
    incoming: Any
    incoming_at: IsoTime | None
    policy: str | None
    outcome: str | None
    status: str
    reason: str | None
    resolution: Any
    run_id: str | None
    created_at: IsoTime
    resolved_at: IsoTime | None


class CrmClientDetailOut(CrmClientOut):
    sources: list[SourceRecordOut]
    weddings: list[ClientWeddingOut]
    merges: list[MergeOut]
    open_conflicts: list[CrmConflictOut]


class MergeUndoneOut(Out):
    """An undone merge: the merge (now with ``undone_at``/``undone_to``), the client it had been merged into and
    the client the source record became again."""

    merge: MergeOut
    client: CrmClientOut = Field(description="the surviving client, with the merge's changes it still held undone")
    restored: CrmClientOut = Field(description="the source record's own client again")


class MergesPage(Page[MergeOut]):
    by_rule: dict[str, int] = Field(description="merges in force, per rule")


class PolicyOut(Out):
    id: str
    connection_id: str
    field: str
    kind: str
    source: str | None
    skew_seconds: int


class MappingOut(Out):
    entity: str
    source_key: str
    target: str | None


class MappingsSetOut(Out):
    """A connection's custom field mapping as replaced."""

    connection_id: str
    entity: str
    mappings: list[MappingOut]
    remapped_clients: int = Field(description="existing unified clients whose custom fields were re-mapped")


class ImportJobOut(Out):
    id: str
    connection_id: str | None
    layout: str
    filename: str | None
    status: str
    chunk_size: int
    chunks_done: int
    chunks_total: int | None
    total_rows: int | None
    processed_rows: int
    good_rows: int
    bad_rows: int
    created: int
    updated: int
    merged: int
    conflicts: int
    error_detail: str | None
    created_at: IsoTime
    finished_at: IsoTime | None


class ImportErrorOut(Out):
    line: int
    column: str | None
    code: str
    message: str
    skipped: bool = Field(description="the row was not imported")


class ImportErrorsPage(Out):
    items: list[ImportErrorOut]
    next_cursor: int | None = Field(description="pass as after= for the next page (a line number); null on the last")
    next_after_line: int | None = Field(description="the former name of next_cursor", deprecated=True)


class CrmOutboxOut(Out):
    id: str
    connection_id: str
    crm_client_id: str | None
    op: str
    record_type: str | None
    record_id: str | None
    remote_id: str | None
    payload: Json
    status: str
    attempts: int
    last_error: str | None
    idempotency_key: str
    sent_at: IsoTime | None
    echo_seen_at: IsoTime | None


class CrmWeddingOut(Out):
    id: str
    connection_id: str
    provider: str
    remote_id: str
    name: str | None
    event_date: IsoDate | None
    stage: str | None
    closed: bool
    guest_count: int | None
    job_type: str | None
    client_remote_ids: list[str]
    custom_fields: Json
    version: int
    remote_modified_at: IsoTime | None
    synced_at: IsoTime | None
    deleted_at: IsoTime | None


class CrmEventOut(Out):
    id: str
    connection_id: str
    remote_id: str
    wedding_remote_id: str | None
    kind: str | None
    name: str | None
    starts_at: IsoTime | None
    ends_at: IsoTime | None
    location: str | None
    version: int
    deleted_at: IsoTime | None


class CrmInvoiceOut(Out):
    id: str
    connection_id: str
    remote_id: str
    wedding_remote_id: str | None
    number: str | None
    status: str | None
    currency: str | None
    total_minor: int | None
    paid_minor: int | None
    due_date: IsoDate | None
    payments: list[Json]
    version: int
    deleted_at: IsoTime | None


class WeddingClientOut(Out):
    crm_client_id: str | None
    source_client_id: str
    remote_id: str


class WritebackOut(Out):
    id: str
    connection_id: str
    op: str
    record_type: str | None
    record_id: str | None
    remote_id: str | None
    payload: Json
    status: str
    attempts: int
    last_error: str | None
    idempotency_key: str
    created_at: IsoTime | None
    sent_at: IsoTime | None


class CrmWeddingDetailOut(CrmWeddingOut):
    events: list[CrmEventOut]
    invoices: list[CrmInvoiceOut]
    clients: list[WeddingClientOut]
    writebacks: list[WritebackOut]


WritebackState = Literal["queued", "source_not_writable"]
_WRITEBACK = ("queued: the source gets the change through the outbox; source_not_writable: changed in WedSync "
              "only (its source takes no such write-back)")


class CrmWeddingUpdatedOut(CrmWeddingDetailOut):
    writeback: WritebackState = Field(description=_WRITEBACK)


class CrmEventUpdatedOut(CrmEventOut):
    writebacks: list[WritebackOut]
    writeback: WritebackState = Field(description=_WRITEBACK)


class CrmBookingQueuedOut(WritebackOut):
    """The job's outbox row (``create_job``), with the rows creating the contacts it is linked to."""

    contacts: list[WritebackOut] = Field(description="create_contact rows, one per client the CRM had no contact "
                                                     "for")


class InquiryMergeOut(Out):
    id: str
    rule: str
    score: float


class InquiryClientOut(Out):
    role: str = Field(description="inquirer or partner")
    client_id: str = Field(description="the source record of the marketplace connection")
    crm_client_id: str | None = Field(description="the unified client it resolved into")
    merged: bool = Field(description="merged into a client from another source")
    merge: InquiryMergeOut | None


class InquiryDeliveryOut(Out):
    connection_id: str
    provider: str
    outbox_id: str
    status: str = Field(description="the outbox row's status: pending, done or failed")


class InquiryOut(Out):
    inquiry_id: str
    connection_id: str = Field(description="the vendor's marketplace connection")
    wedding_id: str
    created: bool = Field(description="false: the same inquiry again")
    updated: bool
    clients: list[InquiryClientOut]
    merged: int = Field(description="clients merged with another source's")
    deliveries: list[InquiryDeliveryOut] = Field(description="one per connected CRM that takes inquiries")


# -- calendar -------------------------------------------------------------------------------------------
class CalendarProfileOut(Out):
    timezone: str
    working_hours: dict[str, list[list[str]]] = Field(description='per weekday local spans, e.g. '
                                                                  '{"mon": [["09:00", "17:00"]]}')
    buffer_before_min: int
    buffer_after_min: int
    travel_buffer_min: int
    capacity_max_per_day: int | None
    capacity_kinds: list[str]
    stale_after_s: int
    home_location: str | None


class CalendarSourceOut(Out):
    id: str
    kind: str
    connection_id: str | None
    calendar_id: str = Field(description="the provider's calendar id; a feed's address is not shown")
    name: str
    writable: bool
    receive_blocks: bool
    rules: Json
    status: str
    last_synced_at: IsoTime | None
    last_attempt_at: IsoTime | None
    last_error: str | None
    poll_interval_s: int | None
    push: bool
    incremental: bool


class SpanOut(Out):
    start: IsoTime
    end: IsoTime


class SourceFreshnessOut(Out):
    source_id: str
    name: str
    fresh: bool
    reason: str | None
    last_synced_at: IsoTime | None
    instances: int


class AvailabilityOut(Out):
    window_start: IsoTime
    window_end: IsoTime
    complete: bool = Field(description="false: a source is stale or failing and its whole window counts as busy")
    free: list[SpanOut]
    busy: list[SpanOut] | None = Field(default=None, description="left out with include_busy=false")
    sources: list[SourceFreshnessOut]
    full_days: list[IsoDate]
    warnings: list[str]


class BookingOut(Out):
    id: str
    kind: str
    status: str
    resource: str
    start: IsoTime
    end: IsoTime
    expires_at: IsoTime | None
    channel: str
    external_ref: str | None
    title: str
    meeting_type: str | None
    category: str | None
    location: str | None
    wedding_id: str | None
    contact_email: str | None
    created_at: IsoTime
    cancelled_at: IsoTime | None
    invitation_ics: str | None


class CalendarConflictOut(Out):
    """A conflict or potential conflict: ``type`` says which, and which of the other keys it has
    (``external_overlap``, ``tentative_overlap``, ``source_unavailable``: the booking and the event;
    ``travel_time``: the two bookings and the gap; ``hold_expiring``; a recorded import clash: its row)."""

    type: str
    booking_id: str | None = None
    booking_title: str | None = None
    source_id: str | None = None
    event_uid: str | None = None
    event_summary: str | None = None
    start: IsoTime | None = None
    end: IsoTime | None = None
    wedding_id: str | None = None
    after_booking_id: str | None = None
    gap_minutes: int | None = None
    expires_at: IsoTime | None = None
    id: str | None = None
    kind: str | None = None
    channel: str | None = None
    external_ref: str | None = None
    detail: Json | None = None


class SuggestionOut(Out):
    action: str
    reason: str
    booking_id: str | None = None
    conflict_id: str | None = None
    start: IsoTime | None = None
    end: IsoTime | None = None


class CalendarConflictsOut(Out):
    conflicts: list[CalendarConflictOut]
    potential_conflicts: list[CalendarConflictOut]
    resolution_suggestions: list[SuggestionOut]
    impacted_weddings: list[str]
    recommended_actions: list[str]
    sources: list[SourceFreshnessOut]


class PeakOut(Out):
    period: str
    kind: Literal["weekday", "month"]
    busy_hours: float


class PatternOut(Out):
    pattern: str
    counts: dict[str, int] | None = None
    value: int | None = None


class OpportunityOut(Out):
    start: IsoTime
    end: IsoTime
    hours: float


class CalendarReportOut(Out):
    timeframe: SpanOut
    open_hours: float
    total_available_hours: float
    busy_hours: float
    booked_hours: float
    utilization_rate: float
    peak_demand_periods: list[PeakOut]
    booking_patterns: list[PatternOut]
    revenue_opportunities: list[OpportunityOut]
    vendor_id: str
    complete: bool
    sources: list[SourceFreshnessOut]


class BlockOut(Out):
    id: str
    target_source_id: str
    origin: str
    block_uid: str
    start: IsoTime
    end: IsoTime
    desired: str
    state: str
    remote_id: str | None
    attempts: int
    last_error: str | None


class SourceSyncOut(Out):
    """A source's sync: queued as a workflow (``workflow_id``), or run here at once (its counts, and ``error``
    when it failed)."""

    status: Literal["queued", "ok", "failed"]
    workflow_id: str | None = Field(default=None, description="queued: the sync workflow's id")
    error: str | None = Field(default=None, description="failed: why")
    pages: int | None = Field(default=None, description="run here: pages read")
    items: int | None = Field(default=None, description="run here: events read")
    created: int | None = None
    updated: int | None = None
    deleted: int | None = None
    rejected: int | None = Field(default=None, description="run here: events that could not be read")


class IcsValidOut(Out):
    events: int = Field(description="the events the iCalendar text holds")


class BookingCreatedOut(BookingOut):
    replayed: bool | None = Field(default=None, description="present (true) when a booking with this channel and "
                                                            "external_ref existed: that booking, unchanged")


class SlotOut(Out):
    start: IsoTime
    end: IsoTime
    preferred: bool = Field(description="on one of the preferred dates")
    travel_buffer_before: bool = Field(description="a travel buffer was kept before it (another location)")
    travel_buffer_after: bool


class SlotsOut(Out):
    slots: list[SlotOut]
    complete: bool = Field(description="false: a source is stale or failing and its whole window counts as busy")
    sources: list[SourceFreshnessOut]
    warnings: list[str]


class MeetingOut(BookingOut):
    invitation_delivery: str = Field(description="how the invitation reaches the guest (this hub sends no e-mail)")


class PropagationOut(Out):
    added: int = Field(description="blocks planned on the vendor's other calendars")
    changed: int
    removed: int
    pushed: int = Field(description="outbox rows applied at the providers")
    failed: int


class FeedCreatedOut(Out):
    id: str
    name: str
    token: str = Field(description="shown once; the feed's secret")
    path: str
    url: str = Field(description="the feed's address: give it to the directory")


# -- payments -------------------------------------------------------------------------------------------
class GatewayAccountOut(Out):
    connectionId: str
    provider: str
    status: str
    accountRef: str | None
    onboarding: Json | None


class PaymentSetupOut(Out):
    vendorId: str
    gatewayConfig: Json = Field(description="primary, fallbacks, routingRules, feeStructure, complianceRequirements")
    gateways: list[GatewayAccountOut]


class SetupGatewayOut(GatewayAccountOut):
    nativeSplit: bool = Field(description="the gateway splits a payment between accounts itself")
    currencies: list[str] = Field(description="the ISO 4217 currencies the gateway takes")


class PaymentSetupDoneOut(Out):
    """The setup as stored, with each gateway's onboarding started (``onboarding``: its next step, e.g. a URL
    the vendor opens)."""

    vendorId: str
    gateways: list[SetupGatewayOut]
    gatewayConfig: Json = Field(description="primary, fallbacks, routingRules, feeStructure, complianceRequirements")


class OnboardingCompleteOut(Out):
    connectionId: str
    provider: str
    status: str
    accountRef: str | None


class TransactionOut(Out):
    """A marketplace transaction as the API answers it."""

    id: str
    status: Literal["created", "processing", "succeeded", "declined", "failed", "unknown"]
    bookingRef: str
    milestone: str
    sequence: int
    amountMinor: int
    currency: str
    methodType: str
    affiliateId: str | None
    split: Json
    escrow: Json | None
    route: list[str]
    failoverOnDecline: bool
    gateway: str | None
    connectionId: str | None
    gatewayRef: str | None
    nativeSplit: bool
    attempts: int
    failureCode: str | None
    failureMessage: str | None
    refundedMinor: int
    createdAt: IsoTime | None
    finalizedAt: IsoTime | None


class AttemptOut(Out):
    no: int
    provider: str | None
    connectionId: str | None
    status: str
    gatewayRef: str | None
    declineCode: str | None
    lookups: int
    message: str | None


class HoldOut(Out):
    id: str
    transactionId: str
    bookingRef: str
    currency: str
    heldMinor: int
    releasedMinor: int
    returnedMinor: int
    remainingMinor: int
    terms: Json
    status: str


class RefundOut(Out):
    id: str
    transactionId: str
    kind: str
    amountMinor: int
    currency: str
    share: Json
    fromEscrow: int
    status: str
    gatewayRef: str | None
    message: str | None


class HoldCancelledOut(HoldOut):
    refund: RefundOut = Field(description="the cancellation's refund to the customer of what was still held")


class MilestoneApprovedOut(Out):
    bookingRef: str
    milestone: str
    released: list[HoldOut] = Field(description="the booking's holds released by this approval")


class TransactionDetailOut(TransactionOut):
    attemptLog: list[AttemptOut]
    escrowHold: HoldOut | None
    refunds: list[RefundOut]


class LedgerCheckOut(Out):
    balanced: bool
    netByCurrency: dict[str, int]
    transactions: int


class BalancesOut(Out):
    vendor: dict[str, dict[str, int]] = Field(description="per currency: payable, escrow")
    platform: dict[str, dict[str, int]] = Field(description="per currency: fees and the platform's accounts")
    affiliates: dict[str, dict[str, int]] = Field(description="per affiliate, per currency")
    clearing: dict[str, dict[str, int]] = Field(description="per gateway connection, per currency")
    check: LedgerCheckOut


class LedgerEntryOut(Out):
    account: str
    currency: str
    amount: int


class LedgerTransactionOut(Out):
    id: str
    reference: str
    kind: str
    transactionId: str | None
    createdAt: IsoTime
    entries: list[LedgerEntryOut]


class DisputeOut(Out):
    id: str
    transactionId: str | None
    gateway: str
    disputeRef: str
    amountMinor: int
    currency: str
    reason: str | None
    status: str
    gatewayStatus: str | None
    share: Json
    evidenceDueBy: IsoTime | None
    evidenceSubmittedAt: IsoTime | None


class ReconciliationSummaryOut(Out):
    id: str
    periodStart: IsoTime
    periodEnd: IsoTime
    createdAt: IsoTime
    summary: Json = Field(description="matched, mismatched, missingInGateway, missingInLedger, per gateway and the "
                                      "ledger check")


class ReconciliationOut(ReconciliationSummaryOut):
    items: list[Json]
