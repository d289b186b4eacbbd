#!/usr/bin/env python3
"""A multiprocessing pool whose workers busy-loop: a CPU fault (or, with --workers 1, one busy
core) that shows up under the name of the script it is copied to, with python as its executable.

  busy_pool.py --workers N --seconds S [--rename PREFIX]

--rename PREFIX makes each worker rename itself at run time (/proc/self/comm = PREFIX-<i>), as
worker pools that set their process title do. Prints `ready pid=<parent pid> workers=<pids>`
once every worker spins; every process exits by itself at the deadline.
"""
import argparse
import multiprocessing as mp
import os
import sys
import time


def spin(i, deadline, rename, started):
    if rename:
        with open("/proc/self/comm", "w") as f:
            f.write(f"{rename}-{i}")
    started.release()
    x = 0
    while time.time() < deadline:
        for _ in range(100000):
            x = (x * 1103515245 + 12345) & 0xFFFFFFFF


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=60)
    ap.add_argument("--rename", default="")
    a = ap.parse_args()
    deadline = time.time() + a.seconds
    ctx = mp.get_context("fork")
    started = ctx.Semaphore(0)
    procs = [ctx.Process(target=spin, args=(i, deadline, a.rename, started), daemon=True)
             for i in range(a.workers)]
    for p in procs:
        p.start()
    for _ in procs:
        started.acquire()
    print(f"ready pid={os.getpid()} workers={','.join(str(p.pid) for p in procs)}", flush=True)
    for p in procs:
        p.join(max(0.0, deadline - time.time()) + 2)
    for p in procs:
        if p.is_alive():
            p.kill()


if __name__ == "__main__":
    sys.exit(main())
