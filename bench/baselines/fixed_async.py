"""Baseline (b): a competent fixed-concurrency asyncio script — aiohttp, 32 workers, simple retries.

Each worker takes the next row: search by NIK, GET the Patient (keeping its ETag), skip the write
when the mobile number is already there, else PUT with If-Match. Every request gets up to 3
attempts on 429, 5xx, a connection error or a 30 s timeout, waiting 1 s between attempts — or the
Retry-After the server sent (seconds or HTTP-date), for that request only. A 401 fetches a new
OAuth2 token (one refresh at a time) and repeats the request. A 412 is counted as a conflict.
Rows that end failed or in conflict are listed in the stats (`retry_rows`): the benchmark runs the
script again on them, as its operator would (bench/harness/passes.py).

    python bench/baselines/fixed_async.py --env-file sandbox.env --work work.csv --out stats.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections import Counter
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import aiohttp
from common import NIK_SYSTEM, current_mobile, digits, read_env, read_work, set_mobile, write_stats

ATTEMPTS = 3
BACKOFF_S = 1.0
TIMEOUT = aiohttp.ClientTimeout(total=30.0)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
RETRY_OUTCOMES = frozenset({"failed", "conflict"})  # worth running again; "skipped" is not


class Failed(Exception):
    pass


def retry_after(value: str | None) -> float:
    if not value:
        return BACKOFF_S
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds())
    except (TypeError, ValueError):
        return BACKOFF_S


class Client:
    def __init__(self, env: dict[str, str], session: aiohttp.ClientSession) -> None:
        self.env, self.session = env, session
        self.base = env["PHONESYNC_FHIR_BASE_URL"].rstrip("/")
        self.headers: dict[str, str] = {}
        self.statuses: Counter[str] = Counter()
        self.retries = 0
        self._refreshing = asyncio.Lock()
        self._generation = 0
        if env.get("PHONESYNC_FHIR_AUTH") != "oauth2":
            header = env.get("PHONESYNC_FHIR_API_KEY_HEADER", "x-api-key")
            self.headers[header] = env["PHONESYNC_FHIR_API_KEY"]

    async def refresh(self, seen: int) -> None:
        async with self._refreshing:
            if self._generation != seen:
                return  # another worker refreshed already
            async with self.session.post(
                self.env["PHONESYNC_OAUTH_TOKEN_URL"],
                params={"grant_type": "client_credentials"},
                data={
                    "client_id": self.env["PHONESYNC_OAUTH_CLIENT_ID"],
                    "client_secret": self.env["PHONESYNC_OAUTH_CLIENT_SECRET"],
                },
                timeout=TIMEOUT,
            ) as reply:
                body = await reply.json(content_type=None)
            self.headers["Authorization"] = f"Bearer {body['access_token']}"
            self._generation += 1

    async def call(self, method: str, url: str, **kw: Any) -> tuple[int, Any, str]:
        refreshed = False
        attempt = 0
        extra = kw.pop("headers", {})
        while True:
            attempt += 1
            generation = self._generation
            try:
                headers = {**self.headers, **extra}
                async with self.session.request(
                    method, url, headers=headers, timeout=TIMEOUT, **kw
                ) as reply:
                    body = await reply.read()
                    status, etag = reply.status, reply.headers.get("ETag", "")
                    wait = retry_after(reply.headers.get("Retry-After"))
            except (aiohttp.ClientError, TimeoutError):
                self.statuses["error"] += 1
                if attempt >= ATTEMPTS:
                    raise Failed("network") from None
                self.retries += 1
                await asyncio.sleep(BACKOFF_S)
                continue
            self.statuses[str(status)] += 1
            if status == 401 and not refreshed and "PHONESYNC_OAUTH_TOKEN_URL" in self.env:
                refreshed = True
                await self.refresh(generation)
                continue
            if status in RETRY_STATUSES and attempt < ATTEMPTS:
                self.retries += 1
                await asyncio.sleep(wait)
                continue
            return status, body, etag


async def update(client: Client, nik: str, phone: str) -> str:
    status, body, _ = await client.call(
        "GET", f"{client.base}/Patient", params={"identifier": f"{NIK_SYSTEM}|{nik}"}
    )
    if status != 200:
        return "failed"
    found = json.loads(body)
    if found.get("total") != 1:
        return "skipped"
    pid = found["entry"][0]["resource"]["id"]
    status, body, etag = await client.call("GET", f"{client.base}/Patient/{pid}")
    if status != 200:
        return "failed"
    patient = json.loads(body)
    if digits(current_mobile(patient) or "") == digits(phone):
        return "unchanged"
    status, _, _ = await client.call(
        "PUT",
        f"{client.base}/Patient/{pid}",
        json=set_mobile(patient, phone),
        headers={"Content-Type": "application/fhir+json", "If-Match": etag},
    )
    return {200: "written", 201: "written", 412: "conflict"}.get(status, "failed")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    env = read_env(args.env_file)
    work = read_work(args.work, args.limit)
    queue: asyncio.Queue[tuple[int, str, str]] = asyncio.Queue()
    for item in work:
        queue.put_nowait(item)
    outcomes: Counter[str] = Counter()
    retry_rows: list[int] = []
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        client = Client(env, session)
        if env.get("PHONESYNC_FHIR_AUTH") == "oauth2":
            await client.refresh(0)

        async def worker() -> None:
            while not queue.empty():
                row, nik, phone = queue.get_nowait()
                try:
                    outcome = await update(client, nik, phone)
                except (Failed, ValueError, KeyError):
                    outcome = "failed"
                outcomes[outcome] += 1
                if outcome in RETRY_OUTCOMES:
                    retry_rows.append(row)

        await asyncio.gather(*(worker() for _ in range(args.concurrency)))
    return {
        "rows": len(work),
        "outcomes": dict(outcomes),
        "requests": sum(client.statuses.values()),
        "retries": client.retries,
        "by_status": dict(client.statuses),
        "retry_rows": sorted(retry_rows),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env-file", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    started = time.monotonic()
    stats = asyncio.run(run(args))
    stats["wall_s"] = time.monotonic() - started
    write_stats(args.out, stats)


if __name__ == "__main__":
    main()
