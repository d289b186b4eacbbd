"""A web worker that burns CPU in a regular expression that backtracks, the way two public
outages did. Used by record-derived.sh to reproduce them on this machine, for real.

    python3 regex_load.py --preset stackexchange-2016 --name web-frontend --workers 3 --seconds 60
    python3 regex_load.py --preset cloudflare-2019 --name http-proxy --workers 3 --seconds 60

stackexchange-2016: the whitespace-trimming expression `^[\\s\\u200c]+|[\\s\\u200c]+$` run over a
post with about 20,000 consecutive whitespace characters that do not end the string (quadratic
backtracking; Stack Exchange's post-mortem of the 2016-07-20 outage).
cloudflare-2019: the part of the WAF rule that Cloudflare's post-mortem of the 2019-07-02 outage
singles out, `.*(?:.*=.*)`, over a request body without an `=` (cubic backtracking).

Each worker is a process named --name (prctl), so collectors see that name; all exit after
--seconds, however they are interrupted.
"""

import argparse
import ctypes
import multiprocessing
import os
import re
import signal
import sys
import time

PRESETS = {
    "stackexchange-2016": (r"^[\s\u200c]+|[\s\u200c]+$", " " * 20000 + "x"),
    "cloudflare-2019": (r".*(?:.*=.*)", "x" * 3000),
}


def name_self(name):
    libc = ctypes.CDLL(None)
    libc.prctl(15, name.encode()[:15], 0, 0, 0)  # PR_SET_NAME


def worker(name, pattern, text, deadline):
    name_self(name)
    rx = re.compile(pattern)
    while time.time() < deadline:
        rx.search(text)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--preset", choices=sorted(PRESETS), required=True)
    p.add_argument("--name", required=True)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--seconds", type=float, default=60)
    a = p.parse_args()
    if a.workers < 1 or a.seconds <= 0:
        sys.exit("--workers and --seconds must be positive")
    pattern, text = PRESETS[a.preset]
    deadline = time.time() + a.seconds
    name_self(a.name)
    procs = [multiprocessing.Process(target=worker, args=(a.name, pattern, text, deadline), daemon=True)
             for _ in range(a.workers)]
    for w in procs:
        w.start()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    print(f"ready pid={os.getpid()}", flush=True)
    # A match can run for seconds past the deadline: the parent ends the workers itself.
    time.sleep(max(0.0, deadline - time.time()))
    for w in procs:
        w.kill()


if __name__ == "__main__":
    main()
