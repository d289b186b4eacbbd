#!/usr/bin/env python3
"""One synchronous writer: rewrites its own file of --mib MiB in --path with 1 MiB O_DSYNC
writes, over and over (the file is unlinked at once, so the disk never fills). Run several as
separate processes for a disk I/O fault, or one with --rate-mib-per-s for a light writer.

  dsync_writer.py --path DIR [--mib M] [--rate-mib-per-s R] --seconds S

Prints `ready pid=<pid>` after the first write; exits by itself at the deadline.
"""
import argparse
import os
import tempfile
import time

MIB = 1024 * 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--path", required=True)
    ap.add_argument("--mib", type=int, default=128)
    ap.add_argument("--rate-mib-per-s", type=float, default=0, help="0: as fast as the disk goes")
    ap.add_argument("--seconds", type=float, default=60)
    a = ap.parse_args()
    deadline = time.time() + a.seconds
    fd, name = tempfile.mkstemp(dir=a.path, prefix="seg-")
    os.close(fd)
    fd = os.open(name, os.O_WRONLY | os.O_DSYNC)
    os.unlink(name)
    block = os.urandom(MIB)
    n, t0 = 0, time.time()
    while time.time() < deadline:
        os.pwrite(fd, block, (n % a.mib) * MIB)
        n += 1
        if n == 1:
            print(f"ready pid={os.getpid()}", flush=True)
        if a.rate_mib_per_s > 0:
            time.sleep(max(0.0, min(t0 + n / a.rate_mib_per_s, deadline) - time.time()))
    os.close(fd)


if __name__ == "__main__":
    main()
