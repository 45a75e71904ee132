"""Slack's side of the ack-latency bench, in a process of its own: closed-loop workers send
signed slash commands and time each answer. Slack's senders do not share a Python process (and
its one running thread) with the emulators that the bot calls back, so neither do these.

Each worker keeps one connection and sends with the standard library's ``http.client``, the
lightest client that speaks HTTP/1.1: the senders share this machine's two cores with the bot,
and a heavier client measures itself. With ``requests`` the senders spent ~1.2 ms of CPU per
command against the bot's ~0.7 ms, and 20 of them queued behind their own process's running
thread: a minimal Bolt app's p99 read 63-71 ms, against 21-23 ms with this client.

Reads one JSON object on stdin: ``url``, ``threads`` and ``requests`` (each ``body`` as text
and ``headers``); prints one: ``latencies_s``, ``wall_s`` and ``errors``.

    python -m bench.senders < requests.json
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from typing import Any
from urllib.parse import urlsplit


def send_all(url: str, batch: list[dict[str, Any]], threads: int) -> dict[str, Any]:
    target = urlsplit(url)
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1, timeout=30)  # a worker that cannot connect

    def worker(index: int) -> None:
        mine = [(r["body"].encode(), r["headers"]) for r in batch[index::threads]]
        local: list[float] = []
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=10)
        try:
            connection.connect()
            barrier.wait()
            for body, headers in mine:
                started = time.perf_counter()
                connection.request("POST", target.path, body, headers)
                response = connection.getresponse()
                response.read()
                local.append(time.perf_counter() - started)
                if response.status != 200:
                    with lock:
                        errors.append(f"HTTP {response.status}")
        finally:
            connection.close()
        with lock:
            latencies.extend(local)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    barrier.wait()  # every worker is connected: the clock starts with the first send
    started = time.perf_counter()
    for thread in workers:
        thread.join()
    return {"latencies_s": latencies, "wall_s": time.perf_counter() - started, "errors": errors}


def main() -> int:
    asked = json.load(sys.stdin)
    print(json.dumps(send_all(asked["url"], asked["requests"], asked["threads"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
