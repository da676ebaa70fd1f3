"""Row ids: ``wedsync.ids.new_id`` next to python-ulid's ``str(ULID()).lower()`` (the raw baseline, what the hub
used before), in ids per second, single-threaded and with a second thread running Python beside the caller.

    .venv/bin/python bench/ids.py            # 200,000 ids each way, best of 5

The second case is the sync's: the page write runs in a worker thread while the event loop prepares the next
page (ids included). python-ulid reads ``os.urandom`` once per id; a system call releases the GIL, and getting it
back from a thread that is running Python can take up to the switch interval (5 ms).
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))


def rate(make: Callable[[], str], n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        for _ in range(n):
            make()
        best = min(best, time.perf_counter() - t)
    return n / best


def busy(stop: threading.Event) -> None:
    x = 0
    while not stop.is_set():
        for i in range(1000):
            x += i


def main(argv: list[str] | None = None) -> int:
    from ulid import ULID

    from wedsync.ids import new_id

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--ids", type=int, default=200_000)
    p.add_argument("--repeat", type=int, default=5)
    args = p.parse_args(argv)

    def baseline() -> str:
        return str(ULID()).lower()

    print(f"{'case':<34}{'python-ulid ids/s':>20}{'new_id ids/s':>16}{'ratio':>8}")
    for label, threaded in (("one thread", False), ("beside a busy Python thread", True)):
        stop = threading.Event()
        other = threading.Thread(target=busy, args=(stop,), daemon=True)
        if threaded:
            other.start()
        try:
            # the busy thread costs both ways the same GIL share; fewer ids per pass keep the runs short
            n = args.ids // 10 if threaded else args.ids
            base, ours = rate(baseline, n, args.repeat), rate(new_id, n, args.repeat)
        finally:
            stop.set()
            if threaded:
                other.join()
        print(f"{label:<34}{base:>20,.0f}{ours:>16,.0f}{ours / base:>8.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
