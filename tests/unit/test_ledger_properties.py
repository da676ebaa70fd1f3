"""Ledger properties (hypothesis): parts sum to the whole, every currency nets to zero, and rounding never
drives a vendor's balance negative, over random charges, refunds, releases and disputes."""

from __future__ import annotations

from collections import defaultdict

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wedsync.domain import ledger as L
from wedsync.domain.escrow import EscrowTerms
from wedsync.domain.splits import FeeStructure, Split, compute_split, share_of

CURRENCIES = ["USD", "JPY", "KWD", "EUR"]

op = st.one_of(
    st.tuples(st.just("refund"), st.integers(min_value=1, max_value=10_000)),
    st.tuples(st.just("release"), st.integers(min_value=1, max_value=10_000)),
    st.tuples(st.just("dispute"), st.integers(min_value=1, max_value=10_000)),
    st.tuples(st.just("won"), st.just(0)),
)

payment = st.fixed_dictionaries({
    "amount": st.integers(min_value=1, max_value=5_000_000),
    "currency": st.sampled_from(CURRENCIES),
    "platform_bps": st.integers(min_value=0, max_value=3000),
    "affiliate_bps": st.integers(min_value=0, max_value=2000),
    "affiliate": st.booleans(),
    "holdback_bps": st.one_of(st.none(), st.integers(min_value=1, max_value=10_000)),
    "native": st.booleans(),
    "ops": st.lists(op, max_size=8),
})


def _sum(postings: list[L.Posting]) -> dict[tuple[str, str], int]:
    out: dict[tuple[str, str], int] = defaultdict(int)
    for p in postings:
        out[(p.account, p.currency)] += p.amount
    return out


@settings(max_examples=300, deadline=None)
@given(st.lists(payment, min_size=1, max_size=6))
def test_random_payment_lives_keep_the_ledger_sound(payments: list[dict]) -> None:  # type: ignore[type-arg]
    posted: list[L.Posting] = []
    refs: set[str] = set()
    for n, p in enumerate(payments):
        fees = FeeStructure(platform_bps=p["platform_bps"], affiliate_bps=p["affiliate_bps"])
        split = compute_split(p["amount"], p["currency"], fees, has_affiliate=p["affiliate"])
        assert split.total == p["amount"] and min(split.parts()) >= 0  # parts sum to the whole
        parties = L.Parties(vendor_id="v", connection_id="c", affiliate_id="a" if p["affiliate"] else None)
        held = EscrowTerms("manual", p["holdback_bps"]).held_part(split.vendor) if p["holdback_bps"] else 0
        native = p["native"] and not held
        txns = L.charge_txns(f"i{n}", p["currency"], parties, split, held=held, native_transfer=native)
        remaining, escrow_left, released = split, held, 0
        disputed: tuple[Split, int] | None = None
        for k, (kind, amount) in enumerate(p["ops"]):
            if kind == "refund" and remaining.total:
                sh = share_of(min(amount, remaining.total), remaining)
                from_escrow = min(sh.vendor, escrow_left)
                txns.append(L.refund_txn(f"r{n}.{k}", p["currency"], parties, sh, from_escrow=from_escrow))
                if native and sh.vendor - from_escrow:
                    txns.append(L.transfer_reversal_txn(f"rv{n}.{k}", p["currency"], parties, sh.vendor - from_escrow))
                remaining, escrow_left = remaining.minus(sh), escrow_left - from_escrow
            elif kind == "release" and escrow_left:
                amt = min(amount, escrow_left)
                txns.append(L.escrow_release_txn(f"e{n}.{k}", p["currency"], "v", amt))
                escrow_left, released = escrow_left - amt, released + amt
            elif kind == "dispute" and disputed is None and remaining.total:
                sh = share_of(min(amount, remaining.total), remaining)
                from_escrow = min(sh.vendor, escrow_left)
                txns.append(L.dispute_withdrawal_txn(f"d{n}.{k}", p["currency"], parties, sh, from_escrow=from_escrow))
                if native and sh.vendor - from_escrow:  # the vendor's natively paid part is pulled back
                    txns.append(L.transfer_reversal_txn(f"dr{n}.{k}", p["currency"], parties, sh.vendor - from_escrow))
                disputed, escrow_left, remaining = (sh, from_escrow), escrow_left - from_escrow, remaining.minus(sh)
            elif kind == "won" and disputed is not None:
                sh, fe = disputed
                txns.append(L.dispute_reinstatement_txn(f"w{n}.{k}", p["currency"], parties, sh, to_escrow=fe))
                if native and sh.vendor - fe:  # and transferred again
                    txns.append(L.transfer_txn(f"wt{n}.{k}", p["currency"], parties, sh.vendor - fe))
                remaining, escrow_left, disputed = remaining.plus(sh), escrow_left + fe, None
        for t in txns:
            assert t.reference not in refs  # unique references
            refs.add(t.reference)
            L.check_balanced(t.postings)
            posted.extend(t.postings)
        assert min(remaining.parts()) >= 0 and escrow_left >= 0
        bal = _sum([q for t in txns for q in t.postings])
        payable = -bal.get((L.vendor_payable("v"), p["currency"]), 0)
        escrow = -bal.get((L.vendor_escrow("v"), p["currency"]), 0)
        # No negative vendor balance from rounding: what the vendor is owed is its remaining part,
        # less what was paid out natively; never below zero.
        assert escrow == escrow_left >= 0
        expected_payable = 0 if native else remaining.vendor - escrow_left
        assert payable == expected_payable >= 0
        assert -bal.get((L.PLATFORM_FEES, p["currency"]), 0) == remaining.platform >= 0
        posted_clearing = bal.get((L.clearing("c"), p["currency"]), 0)
        assert posted_clearing == remaining.total - (remaining.vendor - escrow_left if native else 0)
    totals: dict[str, int] = defaultdict(int)
    for q in posted:
        totals[q.currency] += q.amount
    assert all(v == 0 for v in totals.values())  # every currency nets to zero


def test_unbalanced_and_malformed_transactions_are_refused() -> None:
    with pytest.raises(L.UnbalancedTransaction):
        L.LedgerTxn("x", "t", (L.Posting("a", "USD", 5), L.Posting("b", "USD", -4)))
    with pytest.raises(L.UnbalancedTransaction):
        L.LedgerTxn("x", "t", (L.Posting("a", "USD", 5), L.Posting("b", "EUR", -5)))
    with pytest.raises(L.UnbalancedTransaction):
        L.LedgerTxn("x", "t", (L.Posting("a", "USD", 5),))
    with pytest.raises(L.UnbalancedTransaction):
        L.LedgerTxn("x", "t", (L.Posting("a", "USD", 0), L.Posting("b", "USD", 0)))
