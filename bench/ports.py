#!/usr/bin/env python3
"""Free loopback ports for the bench scripts (bench/bench_lib.sh, bench/chaos.py), chosen the way
the tests choose theirs (docs/testing.md, "Ports"): at random below the kernel's ephemeral range
(above it where there is no room below), so that no outgoing connection's source port can take
one between the choice and the server's bind; each checked by listening on it; never the same
port twice in one run.

usage: ports.py FILE   prints a free port and adds it to FILE, the ports the run handed out
"""
import random
import socket
import sys


def _pick_range():
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low, high = (int(x) for x in f.read().split())
    except (OSError, ValueError):
        low, high = 32768, 60999  # the kernel's default
    if low - 10000 >= 1000:
        return 10000, low - 1
    if 65535 - high >= 1000:
        return high + 1, 65535
    return 1024, 65535  # no room outside the range: anywhere, still checked


def free_port(given):
    """A port nothing listens on and not in `given` (a set of ints), added to it."""
    low, high = _pick_range()
    for _ in range(1000):
        port = random.randint(low, high)
        if port in given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                s.listen(1)
            except OSError:
                continue
        given.add(port)
        return port
    raise RuntimeError(f"no free loopback port in {low}-{high} after 1000 tries")


def main():
    path = sys.argv[1]
    try:
        with open(path) as f:
            given = {int(x) for x in f.read().split()}
    except FileNotFoundError:
        given = set()
    port = free_port(given)
    with open(path, "a") as f:
        f.write(f"{port}\n")
    print(port)


if __name__ == "__main__":
    main()
