#!/usr/bin/env python3
"""Grows its resident memory steadily (bytearray chunks, every page written), the way a cache
that is never evicted leaks; or, with --hold, grows to --max-mib at once and then stays there
(a large but stable footprint).

  leak.py --rate-mib-per-s R --max-mib M --seconds S [--hold]

Prints `ready pid=<pid>` after the first chunk (with --hold: once M MiB are resident). Stops
growing at M MiB, and exits by itself at the deadline.
"""
import argparse
import os
import time

MIB = 1024 * 1024


def chunk(mib):
    b = bytearray(mib * MIB)
    for off in range(0, len(b), 4096):  # touch every page: resident, not just reserved
        b[off] = 1
    return b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rate-mib-per-s", type=float, default=40)
    ap.add_argument("--max-mib", type=int, default=1500)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--hold", action="store_true")
    a = ap.parse_args()
    deadline = time.time() + a.seconds
    kept = []
    if a.hold:
        for _ in range(a.max_mib // 64):
            kept.append(chunk(64))
        print(f"ready pid={os.getpid()}", flush=True)
        time.sleep(max(0.0, deadline - time.time()))
        return
    step = 0.1
    per_step = max(1, round(a.rate_mib_per_s * step))
    total, t = 0, time.time()
    while time.time() < deadline:
        if total + per_step <= a.max_mib:
            kept.append(chunk(per_step))
            total += per_step
            if len(kept) == 1:
                print(f"ready pid={os.getpid()}", flush=True)
        t += step
        time.sleep(max(0.0, min(t, deadline) - time.time()))


if __name__ == "__main__":
    main()
