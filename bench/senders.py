"""Slack's side of the ack-latency bench, in a process of its own: closed-loop workers send
signed slash commands and time each answer. Slack's senders do not share a Python process (and
its one running thread) with the emulators that the bot calls back, so neither do these.

Reads one JSON object on stdin: ``url``, ``threads`` and ``requests`` (each ``body`` as text
and ``headers``); prints one: ``latencies_s``, ``wall_s`` and ``errors``.

    python -m bench.senders < requests.json
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any

import requests


def send_all(url: str, batch: list[dict[str, Any]], threads: int) -> dict[str, Any]:
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    barrier = threading.Barrier(threads + 1)

    def worker(index: int) -> None:
        mine = [(r["body"].encode(), r["headers"]) for r in batch[index::threads]]
        local: list[float] = []
        with requests.Session() as session:
            barrier.wait()
            for body, headers in mine:
                started = time.perf_counter()
                response = session.post(url, data=body, headers=headers, timeout=10)
                local.append(time.perf_counter() - started)
                if response.status_code != 200:
                    with lock:
                        errors.append(f"HTTP {response.status_code}")
        with lock:
            latencies.extend(local)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
    for thread in workers:
        thread.start()
    barrier.wait()  # every worker has its session: the clock starts with the first send
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
