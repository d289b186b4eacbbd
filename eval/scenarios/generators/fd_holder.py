#!/usr/bin/env python3
"""A service that holds many descriptors: lowers its own RLIMIT_NOFILE soft limit to --limit
(raising the hard limit only if it is lower, and only where it may) and opens --open of them, as sockets (connected TCP pairs over
loopback, like client connections that are never closed) or as files, and keeps them.

  fd_holder.py --limit L --open N [--kind sockets|files] [--grow] --seconds S

Prints `ready pid=<pid> fds=<count> limit=<soft limit>`. With --grow it keeps trying to open one more connection
every second (and fails with EMFILE at the limit, as the leaking service does); without it the
count stays put. Exits by itself at the deadline.
"""
import argparse
import os
import resource
import socket
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--limit", type=int, default=512)
    ap.add_argument("--open", type=int, default=500)
    ap.add_argument("--kind", choices=["sockets", "files"], default="sockets")
    ap.add_argument("--grow", action="store_true")
    ap.add_argument("--seconds", type=float, default=60)
    a = ap.parse_args()
    deadline = time.time() + a.seconds
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # Raising the hard limit too needs CAP_SYS_RESOURCE; without it the soft limit stops at the
    # hard one (the ready line says which limit is in force).
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (a.limit, max(hard, a.limit)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(a.limit, hard), hard))
    kept = []
    listener = None
    if a.kind == "sockets":
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(1024)
        kept.append(listener)

    def open_one():
        if a.kind == "files":
            return [open("/dev/null", "rb")]
        c = socket.create_connection(listener.getsockname())
        try:
            s, _ = listener.accept()
        except OSError:
            c.close()
            raise
        return [c, s]

    base = len(os.listdir("/proc/self/fd"))
    while len(os.listdir("/proc/self/fd")) < a.open and time.time() < deadline:
        try:
            kept.extend(open_one())
        except OSError:
            break
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    print(f"ready pid={os.getpid()} fds={len(os.listdir('/proc/self/fd'))} limit={limit} base={base}", flush=True)
    while time.time() < deadline:
        if a.grow:
            try:
                kept.extend(open_one())
            except OSError:
                pass
        time.sleep(min(1.0, max(0.0, deadline - time.time())))


if __name__ == "__main__":
    main()
