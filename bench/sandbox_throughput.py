"""Throughput of the sandbox FHIR server: N × GET Patient/{id} (and N × search) with 32 in flight.

The server runs in its own process, pinned to one core when the machine has two or more; the
aiohttp client runs here (pinned to another core). Prints requests per second on the wall clock
and, from the server process's CPU time, its one-core capacity: on a busy machine the wall-clock
figure measures the contention, the CPU figure measures the server.

    uv run python bench/sandbox_throughput.py [--requests 5000] [--concurrency 32] [--patients 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing as mp
import os
import time
from collections import Counter
from collections.abc import Callable
from multiprocessing.queues import Queue
from pathlib import Path

from aiohttp import ClientSession, TCPConnector, web

from phonesync.sandbox.fhir_server import FhirProfile, PatientStore, create_fhir_app

NIK_SYSTEM = "https://fhir.kemkes.go.id/id/nik"
HEADERS = {"x-api-key": "sandbox-key"}


def pin_to_core(core: int) -> None:
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    if len(cores) >= 2:
        os.sched_setaffinity(0, {cores[core % len(cores)]})


def synthetic_patient(i: int) -> dict[str, object]:
    return {
        "resourceType": "Patient",
        "id": f"P{i:011d}",
        "identifier": [{"system": NIK_SYSTEM, "value": f"3174{i:012d}"}],
        "name": [{"use": "official", "text": f"Pasien {i}"}],
        "gender": "female" if i % 2 else "male",
        "birthDate": "1990-01-01",
        "telecom": [{"system": "phone", "value": f"+62812{i:08d}", "use": "mobile"}],
        "address": [{"city": "Jakarta", "country": "ID"}],
    }


def serve(patients: int, ports: Queue[int]) -> None:
    """Child process: seed a store and serve it until terminated."""
    pin_to_core(0)
    store = PatientStore()
    for i in range(patients):
        store.add(synthetic_patient(i))

    async def main() -> None:
        runner = web.AppRunner(create_fhir_app(store, FhirProfile()), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        ports.put(int(runner.addresses[0][1]))
        await asyncio.Event().wait()

    asyncio.run(main())


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (Linux /proc); NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def hammer(url: str, paths: Callable[[int], str], total: int, concurrency: int) -> float:
    """Send `total` GETs with `concurrency` in flight (after a warm-up pass); return seconds."""
    statuses: Counter[int] = Counter()
    connector = TCPConnector(limit=concurrency)
    async with ClientSession(url, connector=connector, headers=HEADERS) as session:
        counter = iter(range(total))

        async def worker() -> None:
            for i in counter:
                async with session.get(paths(i)) as response:
                    await response.read()
                    statuses[response.status] += 1

        for _ in range(2):  # the first pass warms connections and caches, the second is timed
            statuses.clear()
            counter = iter(range(total))
            started = time.perf_counter()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            elapsed = time.perf_counter() - started
    assert statuses == {200: total}, statuses
    return elapsed


def measure(label: str, server_pid: int, run: Callable[[], float], total: int) -> None:
    cpu_before = cpu_seconds(server_pid)
    elapsed = run()
    cpu = (cpu_seconds(server_pid) - cpu_before) / 2  # hammer sends two passes of `total`
    print(
        f"{label:26} {total / elapsed:7.0f} req/s wall clock, "
        f"server {cpu / total * 1e6:5.0f} µs CPU/request = {total / cpu:6.0f} req/s per core"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--patients", type=int, default=2000)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    ports: Queue[int] = ctx.Queue()
    server = ctx.Process(target=serve, args=(args.patients, ports), daemon=True)
    server.start()
    try:
        url = f"http://127.0.0.1:{ports.get(timeout=60)}"
        pin_to_core(1)
        n, c, size = args.requests, args.concurrency, args.patients
        print(f"{n} requests, {c} concurrent, {size} patients")

        def read() -> float:
            return asyncio.run(hammer(url, lambda i: f"/Patient/P{i % size:011d}", n, c))

        def search() -> float:
            target = f"/Patient?identifier={NIK_SYSTEM}|3174{{:012d}}"
            return asyncio.run(hammer(url, lambda i: target.format(i % size), n, c))

        measure("GET /Patient/{id}", server.pid or 0, read, n)
        measure("GET /Patient?identifier=", server.pid or 0, search, n)
    finally:
        server.terminate()
        server.join()


if __name__ == "__main__":
    main()
