"""Row ids: valid lowercase ULIDs, unique, in creation order, and not repeated by a forked child."""

from __future__ import annotations

import os
import random
import time

import pytest
from ulid import ULID

from wedsync.ids import ulid_string
from wedsync.store.tables import new_id


def test_ulid_string_matches_the_reference_encoding() -> None:
    rng = random.Random(7)
    for _ in range(500):
        ms, rand = rng.getrandbits(48), rng.getrandbits(80)
        reference = ULID.from_bytes(ms.to_bytes(6, "big") + rand.to_bytes(10, "big"))
        assert ulid_string(ms, rand) == str(reference).lower()
    assert ulid_string(0, 0) == "0" * 26
    assert ulid_string((1 << 48) - 1, (1 << 80) - 1) == "7" + "z" * 25


@pytest.mark.parametrize(("ms", "rand"), [(-1, 0), (1 << 48, 0), (0, 1 << 80), (0, -1)])
def test_ulid_string_refuses_values_out_of_range(ms: int, rand: int) -> None:
    with pytest.raises(ValueError):
        ulid_string(ms, rand)


def test_new_ids_are_unique_sorted_and_carry_the_time() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_id() for _ in range(20_000)]  # thousands per millisecond: the same-millisecond path runs
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids)
    assert all(len(i) == 26 and i == i.lower() for i in ids)
    stamps = [ULID.from_str(i.upper()).milliseconds for i in (ids[0], ids[-1])]
    # the last may run ahead of the clock only by borrowing, which needs 2^80 ids in a millisecond
    assert before <= stamps[0] <= stamps[1] <= after


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    new_id()  # fill the parent's entropy buffer
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids, to the parent
        os.close(read)
        os.write(write, ",".join(new_id() for _ in range(50)).encode())
        os._exit(0)
    os.close(write)
    with os.fdopen(read) as pipe:
        child = pipe.read().split(",")
    os.waitpid(pid, 0)
    parent = [new_id() for _ in range(50)]
    assert len(child) == 50
    # the same buffered bytes would give the same random parts; compare those (the time parts may differ)
    assert not {c[10:] for c in child} & {p[10:] for p in parent}
