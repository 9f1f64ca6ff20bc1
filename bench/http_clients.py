"""The HTTP-client choice, measured: httpx.AsyncClient vs aiohttp, CPU per request.

The sandbox FHIR server runs in its own process (`phonesync sandbox`, the other core); this
process sends N × `GET Patient/{id}` with 32 in flight, first with one client, then the other
(after a warm-up pass each), and reports the client process's CPU time per request
(`time.process_time`, all threads) and the wall-clock rate. Loopback, no added latency: the
server answers as fast as it can, so CPU per request is the figure that transfers to the real
network; the wall rate mostly measures the server.

    python bench/http_clients.py [--requests 5000] [--concurrency 32] [--rounds 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import date
from pathlib import Path

import aiohttp
import httpx
from harness import data  # bench/ is the script's directory, hence on sys.path
from harness.sandbox import Sandbox

HEADERS = {"x-api-key": "sandbox-key"}
Fetch = Callable[[str], Awaitable[int]]


async def drive(fetch: Fetch, urls: list[str], concurrency: int) -> None:
    queue = iter(urls)

    async def worker() -> None:
        for url in queue:
            status = await fetch(url)
            assert status == 200, status

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def with_aiohttp(urls: list[str], concurrency: int) -> tuple[float, float]:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(headers=HEADERS, connector=connector) as session:

        async def fetch(url: str) -> int:
            async with session.get(url) as reply:
                await reply.read()
                return reply.status

        return await measure(fetch, urls, concurrency)


async def with_httpx(urls: list[str], concurrency: int) -> tuple[float, float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(headers=HEADERS, limits=limits, timeout=60) as client:

        async def fetch(url: str) -> int:
            reply = await client.get(url)
            return reply.status_code

        return await measure(fetch, urls, concurrency)


async def measure(fetch: Fetch, urls: list[str], concurrency: int) -> tuple[float, float]:
    await drive(fetch, urls[: max(200, len(urls) // 10)], concurrency)  # warm-up: connections
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await drive(fetch, urls, concurrency)
    cpu, wall = time.process_time() - cpu0, time.perf_counter() - wall0
    return 1000 * cpu / len(urls), len(urls) / wall


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--requests", type=int, default=5000)
    p.add_argument("--concurrency", type=int, default=32)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--out", type=Path, default=Path("var/bench/http_clients.json"))
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        night = data.synthetic(1, 2000, date(2024, 3, 15))
        night.write(Path(tmp) / "data")
        sandbox = Sandbox(Path(tmp) / "state", Path(tmp) / "data", "2024-03-15", []).start()
        try:
            base = f"{sandbox.root}/fhir-r4/v1/Patient/"
            ids = [pt["id"] for pt in night.patients]
            urls = [base + ids[i % len(ids)] for i in range(args.requests)]
            results: dict[str, list[list[float]]] = {"aiohttp": [], "httpx": []}
            for _ in range(args.rounds):  # interleaved, so load changes hit both alike
                results["aiohttp"].append(list(asyncio.run(with_aiohttp(urls, args.concurrency))))
                results["httpx"].append(list(asyncio.run(with_httpx(urls, args.concurrency))))
        finally:
            sandbox.stop()
    report = {
        "requests": args.requests,
        "concurrency": args.concurrency,
        "load_avg": os.getloadavg(),
        "versions": {"aiohttp": aiohttp.__version__, "httpx": httpx.__version__},
        "rounds": results,
        "best_cpu_ms_per_request": {k: min(r[0] for r in v) for k, v in results.items()},
        "median_requests_per_s": {
            k: sorted(r[1] for r in v)[len(v) // 2] for k, v in results.items()
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
