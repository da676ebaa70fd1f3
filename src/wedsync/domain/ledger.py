"""Double-entry ledger model: accounts, balanced transactions and the postings of each payment event.

Sign convention: an entry's ``amount`` is a debit when positive and a credit when negative; every
transaction sums to zero in each currency (the database enforces it as well, see
``store/tables_payments.py``). The parties' accounts are liabilities of the platform, so their balance
is shown as ``-sum(amounts)``: positive means money owed to them.

Accounts::

    clearing:<connection id>        funds at one gateway account (asset)
    vendor:<vendor id>:payable      owed to the vendor, payable now
    vendor:<vendor id>:escrow       owed to the vendor, held until a release condition
    platform:fees                   the platform's revenue
    platform:processing             gateway processing fees the platform paid (expense)
    affiliate:<affiliate id>        owed to the referring planner
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from wedsync.domain.money import normalize_currency
from wedsync.domain.splits import Split


class UnbalancedTransaction(ValueError):
    pass


def clearing(connection_id: str) -> str:
    return f"clearing:{connection_id}"


def vendor_payable(vendor_id: str) -> str:
    return f"vendor:{vendor_id}:payable"


def vendor_escrow(vendor_id: str) -> str:
    return f"vendor:{vendor_id}:escrow"


def affiliate_account(affiliate_id: str) -> str:
    return f"affiliate:{affiliate_id}"


PLATFORM_FEES = "platform:fees"
PLATFORM_PROCESSING = "platform:processing"


@dataclass(frozen=True, slots=True)
class Posting:
    account: str
    currency: str
    amount: int


@dataclass(frozen=True)
class LedgerTxn:
    """One balanced ledger transaction; ``reference`` is unique across the ledger (replays are no-ops)."""

    reference: str
    kind: str
    postings: tuple[Posting, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        check_balanced(self.postings)


def check_balanced(postings: Sequence[Posting]) -> None:
    """Raise ``UnbalancedTransaction`` unless there are two or more non-zero integer entries and every
    currency nets to zero."""
    if len(postings) < 2:
        raise UnbalancedTransaction("a ledger transaction needs at least two entries")
    sums: dict[str, int] = defaultdict(int)
    for p in postings:
        if isinstance(p.amount, bool) or not isinstance(p.amount, int) or p.amount == 0:
            raise UnbalancedTransaction(f"entry amounts are non-zero integers, not {p.amount!r}")
        sums[normalize_currency(p.currency)] += p.amount
    bad = {c: s for c, s in sums.items() if s != 0}
    if bad:
        raise UnbalancedTransaction(f"entries do not net to zero: {bad}")


def _txn(reference: str, kind: str, currency: str, lines: Iterable[tuple[str, int]]) -> LedgerTxn:
    """Merge lines per account, drop zeros, build the transaction."""
    merged: dict[str, int] = {}
    for account, amount in lines:
        merged[account] = merged.get(account, 0) + amount
    postings = tuple(Posting(a, currency, v) for a, v in merged.items() if v != 0)
    return LedgerTxn(reference, kind, postings)


@dataclass(frozen=True, slots=True)
class Parties:
    """The accounts one payment touches."""

    vendor_id: str
    connection_id: str
    affiliate_id: str | None = None

    def lines(self, split: Split, sign: int, *, escrow_part: int = 0) -> list[tuple[str, int]]:
        """Credit (sign -1) or debit (sign +1) each party its part; ``escrow_part`` of the vendor's part
        goes to (or comes from) the escrow account instead of the payable one."""
        out = [(vendor_payable(self.vendor_id), sign * (split.vendor - escrow_part)),
               (vendor_escrow(self.vendor_id), sign * escrow_part),
               (PLATFORM_FEES, sign * split.platform)]
        if split.affiliate:
            if not self.affiliate_id:
                raise UnbalancedTransaction("an affiliate part without an affiliate")
            out.append((affiliate_account(self.affiliate_id), sign * split.affiliate))
        return out


def charge_txns(intent_id: str, currency: str, parties: Parties, split: Split, *, held: int = 0,
                native_transfer: bool = False, processing_fee: int = 0) -> list[LedgerTxn]:
    """A captured payment: the gateway holds the gross, each party is credited its part (``held`` of the
    vendor's part into escrow); a vendor part the gateway paid out natively (destination charge) is
    settled at once by a transfer; the gateway's processing fee is the platform's expense."""
    if not 0 <= held <= split.vendor:
        raise UnbalancedTransaction("the held part must lie within the vendor's part")
    clr = clearing(parties.connection_id)
    lines = [(clr, split.total), *parties.lines(split, -1, escrow_part=held)]
    txns = [_txn(f"charge:{intent_id}", "charge", currency, lines)]
    if native_transfer and split.vendor - held > 0:
        txns.append(transfer_txn(f"transfer:{intent_id}", currency, parties, split.vendor - held))
    if processing_fee:
        txns.append(_txn(f"processing:{intent_id}", "processing_fee", currency,
                         [(PLATFORM_PROCESSING, processing_fee), (clr, -processing_fee)]))
    return txns


def transfer_txn(reference: str, currency: str, parties: Parties, amount: int) -> LedgerTxn:
    """The vendor's payable paid out of the gateway account to the vendor (a native transfer)."""
    return _txn(reference, "transfer", currency,
                [(vendor_payable(parties.vendor_id), amount), (clearing(parties.connection_id), -amount)])


def transfer_reversal_txn(reference: str, currency: str, parties: Parties, amount: int) -> LedgerTxn:
    """A native transfer pulled back from the vendor into the gateway account."""
    return _txn(reference, "transfer_reversal", currency,
                [(clearing(parties.connection_id), amount), (vendor_payable(parties.vendor_id), -amount)])


def escrow_release_txn(reference: str, currency: str, vendor_id: str, amount: int) -> LedgerTxn:
    return _txn(reference, "escrow_release", currency,
                [(vendor_escrow(vendor_id), amount), (vendor_payable(vendor_id), -amount)])


def refund_txn(reference: str, currency: str, parties: Parties, share: Split, *, from_escrow: int = 0,
               kind: str = "refund") -> LedgerTxn:
    """Money back to the customer out of the gateway account; each party gives back its ``share``
    (the vendor's first ``from_escrow`` of it out of escrow)."""
    lines = [(clearing(parties.connection_id), -share.total), *parties.lines(share, +1, escrow_part=from_escrow)]
    return _txn(reference, kind, currency, lines)


def dispute_withdrawal_txn(reference: str, currency: str, parties: Parties, share: Split,
                           *, from_escrow: int = 0) -> LedgerTxn:
    """A dispute: the gateway takes the disputed amount from the platform's account; the parties are
    debited in proportion (the vendor's part is then recovered by a transfer reversal when paid natively)."""
    return refund_txn(reference, currency, parties, share, from_escrow=from_escrow, kind="dispute_withdrawal")


def dispute_reinstatement_txn(reference: str, currency: str, parties: Parties, share: Split,
                              *, to_escrow: int = 0) -> LedgerTxn:
    """A won dispute: the funds come back and each party is credited again."""
    lines = [(clearing(parties.connection_id), share.total), *parties.lines(share, -1, escrow_part=to_escrow)]
    return _txn(reference, "dispute_reinstatement", currency, lines)


def balances(postings: Iterable[Posting]) -> dict[tuple[str, str], int]:
    """(account, currency) -> sum of amounts."""
    out: dict[tuple[str, str], int] = defaultdict(int)
    for p in postings:
        out[(p.account, p.currency)] += p.amount
    return dict(out)
