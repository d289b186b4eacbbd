#!/usr/bin/env python3
"""A connection pool in Python, with no driver: opens --size PostgreSQL connections over the
server's Unix socket (the frontend/backend protocol v3, trust authentication) and keeps them
open, idle, the way an application pool that never returns its connections does. With --query
and --rate it also runs that statement R times per second, round-robin over the connections
(a light, steady load). With --query and --send-once every connection sends the statement once
and does not wait for its answer (workers that each issue the same UPDATE and block on it); with
--run-once every connection runs it once and waits (`BEGIN; UPDATE ...` leaves the session idle
in transaction, holding its row locks until the process goes away).

  pg_pool.py --socket-dir DIR --port P --user U --db D --app NAME --size N [--query SQL (--rate R | --send-once | --run-once)] --seconds S

Prints `ready pid=<pid> conns=<n>` once the connections are open (it stops at the first refused
one and says so); exits by itself at the deadline.
"""
import argparse
import os
import socket
import struct
import sys
import time


def read_msg(s):
    head = b""
    while len(head) < 5:
        part = s.recv(5 - len(head))
        if not part:
            raise ConnectionError("the server closed the connection")
        head += part
    kind, n = head[:1], struct.unpack("!I", head[1:])[0] - 4
    body = b""
    while len(body) < n:
        part = s.recv(n - len(body))
        if not part:
            raise ConnectionError("the server closed the connection")
        body += part
    return kind, body


def until_ready(s):
    while True:
        kind, body = read_msg(s)
        if kind == b"E":
            raise ConnectionError(body.decode(errors="replace"))
        if kind == b"R" and struct.unpack("!I", body[:4])[0] != 0:
            raise ConnectionError("the server wants a password (use trust on the socket)")
        if kind == b"Z":
            return


def connect(a):
    s = socket.socket(socket.AF_UNIX)
    s.connect(os.path.join(a.socket_dir, f".s.PGSQL.{a.port}"))
    params = b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in
                      (("user", a.user), ("database", a.db), ("application_name", a.app)))
    payload = struct.pack("!I", 196608) + params + b"\0"
    s.sendall(struct.pack("!I", len(payload) + 4) + payload)
    until_ready(s)
    return s


def query(s, sql):
    q = sql.encode() + b"\0"
    s.sendall(b"Q" + struct.pack("!I", len(q) + 4) + q)
    until_ready(s)


def main():
    ap = argparse.ArgumentParser()
    for k in ("socket-dir", "port", "user", "db", "app"):
        ap.add_argument(f"--{k}", required=True)
    ap.add_argument("--size", type=int, default=8)
    ap.add_argument("--query", default="")
    ap.add_argument("--rate", type=float, default=0)
    ap.add_argument("--send-once", action="store_true")
    ap.add_argument("--run-once", action="store_true")
    ap.add_argument("--seconds", type=float, default=60)
    a = ap.parse_args()
    deadline = time.time() + a.seconds
    conns = []
    for _ in range(a.size):
        try:
            conns.append(connect(a))
        except (OSError, ConnectionError) as e:
            print(f"pg_pool: connection {len(conns) + 1} refused: {e}", file=sys.stderr, flush=True)
            break
    if a.query and a.send_once:
        q = a.query.encode() + b"\0"
        for s in conns:
            s.sendall(b"Q" + struct.pack("!I", len(q) + 4) + q)
        a.query = ""
    if a.query and a.run_once:
        for s in conns:
            query(s, a.query)
        a.query = ""
    print(f"ready pid={os.getpid()} conns={len(conns)}", flush=True)
    n, t0 = 0, time.time()
    while time.time() < deadline:
        if a.query and a.rate > 0 and conns:
            query(conns[n % len(conns)], a.query)
            n += 1
            time.sleep(max(0.0, min(t0 + n / a.rate, deadline) - time.time()))
        else:
            time.sleep(min(1.0, max(0.0, deadline - time.time())))


if __name__ == "__main__":
    main()
