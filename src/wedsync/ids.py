"""Row ids: lowercase ULIDs (48 bits of milliseconds, 80 random bits, Crockford base 32).

``new_id`` is on the sync's hot path (two or three ids per synced client), so it draws its randomness from a
buffer of ``os.urandom`` refilled 4 KiB at a time rather than one system call per id. A system call releases
the GIL, and getting it back while another thread runs Python can take up to the interpreter's switch interval
(5 ms): measured with py-spy in a 30,000-contact sync, python-ulid's one ``os.urandom`` per id made id
generation 39 % of the page preparation (see docs/benchmarks.md). The ids keep python-ulid's ordering: within
one millisecond each id is the previous one plus one, so ids made by one process sort in creation order.
"""

from __future__ import annotations

import os
import threading
import time

_CROCKFORD = "0123456789abcdefghjkmnpqrstvwxyz"
_PAIRS = [a + b for a in _CROCKFORD for b in _CROCKFORD]
_PAIR_SHIFTS = tuple(range(120, -1, -10))  # 13 lookups of 10 bits each cover the 130 bits of 26 characters
_RANDOM_BITS = 80
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1
_MAX_MS = (1 << 48) - 1
_REFILL = 4096  # bytes of entropy per system call: 409 ids


def ulid_string(timestamp_ms: int, randomness: int) -> str:
    """The 26-character lowercase ULID of a 48-bit millisecond time and 80 random bits."""
    if not 0 <= timestamp_ms <= _MAX_MS:
        raise ValueError(f"ULID time out of range: {timestamp_ms}")
    if not 0 <= randomness <= _RANDOM_MAX:
        raise ValueError("ULID randomness must be 80 bits")
    value = (timestamp_ms << _RANDOM_BITS) | randomness
    pairs = _PAIRS
    return "".join([pairs[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


class _Generator:
    """Monotonic within a process: a second id in the same millisecond is the previous one plus one (a
    clock that steps back keeps the last millisecond), so ids sort in the order they were made."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._pos = 0
        self._last_ms = -1
        self._last_rand = 0
        self._pid = os.getpid()

    def _entropy(self) -> int:
        if self._pos + 10 > len(self._pool):
            self._pool, self._pos = os.urandom(_REFILL), 0
        start = self._pos
        self._pos = start + 10
        return int.from_bytes(self._pool[start:start + 10], "big")

    def __call__(self) -> str:
        ms = time.time_ns() // 1_000_000
        with self._lock:
            if self._pid != os.getpid():
                # a forked child must not reuse its parent's buffered bytes (it would repeat the parent's ids)
                self._pool, self._pos, self._pid, self._last_ms = b"", 0, os.getpid(), -1
            if ms <= self._last_ms:
                ms, rand = self._last_ms, self._last_rand + 1
                if rand > _RANDOM_MAX:  # 2^80 ids in one millisecond: borrow the next one
                    ms, rand = ms + 1, self._entropy()
            else:
                rand = self._entropy()
            self._last_ms, self._last_rand = ms, rand
        return ulid_string(ms, rand)


_generator = _Generator()


def new_id() -> str:
    """A lowercase ULID: sortable by creation time, safe in URLs."""
    return _generator()
