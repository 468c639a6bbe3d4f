#!/usr/bin/env python3
"""Samples some of a router's metrics every PERIOD seconds on one kept-alive connection and prints
each sample as "<unix time> <metric with labels> <value>", until it is stopped.

usage: sample_gauges.py HOST:PORT PERIOD PREFIX...

bench/run.sh samples the delivery lag gauges with it while scenario (c) runs: one process
with one connection instead of a curl, an awk and a date ten times a second, which took 5%
of the two cores the router shares (bench/README.md, "Issue 23, fourteenth round").
"""
import http.client
import sys
import time


def main():
    host, port = sys.argv[1].rsplit(":", 1)
    period = float(sys.argv[2])
    prefixes = tuple(sys.argv[3:])
    conn = None
    while True:
        try:
            if conn is None:
                conn = http.client.HTTPConnection(host, int(port), timeout=5)
            conn.request("GET", "/metrics")
            body = conn.getresponse().read().decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            if conn is not None:
                conn.close()
            conn = None
            time.sleep(period)
            continue
        now = f"{time.time():.6f}"
        lines = []
        for line in body.splitlines():
            if not line.startswith(prefixes):
                continue
            name, _, value = line.rpartition(" ")
            # The name must end where a prefix does, or go on with its labels.
            if any(name == p or name.startswith(p + "{") for p in prefixes):
                lines.append(f"{now} {name} {value}\n")
        sys.stdout.write("".join(lines))
        sys.stdout.flush()
        time.sleep(period)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        pass
