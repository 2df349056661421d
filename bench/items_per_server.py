#!/usr/bin/python3
"""items_per_server.py - how many items one server holds in a given -m.

Starts memstashd and Debian's memcached (/usr/bin/memcached) alternately
(A B A B) with the same flags on a free loopback port, fills each with more
keys than fit (KEY_SIZE-byte keys, VALUE_SIZE-byte values, pipelined
noreply sets through pymemcache), and reports `curr_items` and bytes of
memory per item. Every server is stopped by its pid.

    bench/items_per_server.py [MEMSTASHD] [-m MB] [--value-size N] [--rounds N]
"""
import argparse
import os
import socket
import statistics
import subprocess
import time

from pymemcache.client.base import Client


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def fill(binary, mb, nkeys, key_size, value_size):
    port = free_port()
    args = [binary, "-p", str(port), "-U", "0", "-l", "127.0.0.1", "-m", str(mb), "-t", "1"]
    if os.geteuid() == 0:
        args += ["-u", "root"]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                c = Client(("127.0.0.1", port), connect_timeout=2, timeout=30)
                c.version()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)
        value = b"v" * value_size
        for i in range(0, nkeys, 1000):
            batch = {("k%0*d" % (key_size - 1, j)): value for j in range(i, min(i + 1000, nkeys))}
            c.set_many(batch, noreply=True)
        c.version()  # every noreply set has been processed
        st = c.stats()
        c.close()
        return int(st[b"curr_items"]), int(st.get(b"evictions", 0))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("memstashd", nargs="?", default="build/src/server/memstashd")
    ap.add_argument("-m", type=int, default=64)
    ap.add_argument("--key-size", type=int, default=30)
    ap.add_argument("--value-size", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=2)
    a = ap.parse_args()
    nkeys = a.m * 1024 * 1024 // (a.key_size + a.value_size) + 1000  # more than fits
    res = {"memcached": [], "memstashd": []}
    for _ in range(a.rounds):
        for name, binary in (("memcached", "/usr/bin/memcached"), ("memstashd", a.memstashd)):
            items, ev = fill(binary, a.m, nkeys, a.key_size, a.value_size)
            res[name].append(items)
            print("%-9s -m %d: %d items (%d evictions), %.1f bytes/item"
                  % (name, a.m, items, ev, a.m * 1048576 / items), flush=True)
    mc, ms = statistics.median(res["memcached"]), statistics.median(res["memstashd"])
    print("median items: memcached %d, memstashd %d, ratio %.2f" % (mc, ms, ms / mc))


if __name__ == "__main__":
    main()
