"""Baseline (a): the script someone writes in an afternoon — sequential, `requests`, no retries.

For each row of the work list: search the Patient by NIK, GET it, change the mobile number, PUT it
back. One at a time, one keep-alive `requests.Session` (kinder than bare `requests.get`), a 30 s
timeout (without one a hung request would stall it forever), an OAuth2 token fetched once and
again when its `expires_in` runs out. Any error or non-2xx answer: the row is counted as failed
and the script moves on. It always PUTs (no If-Match, no "already has this number" check). The
failed rows are listed in the stats (`retry_rows`) for the benchmark's next pass.

    python bench/baselines/naive.py --env-file sandbox.env --work work.csv --out stats.json \
        [--limit 300]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from typing import Any

import requests
from common import NIK_SYSTEM, read_env, read_work, set_mobile, write_stats

TIMEOUT_S = 30.0


class Client:
    def __init__(self, env: dict[str, str]) -> None:
        self.env = env
        self.base = env["PHONESYNC_FHIR_BASE_URL"].rstrip("/")
        self.session = requests.Session()
        self.token_expiry = 0.0
        self.statuses: Counter[str] = Counter()
        if env.get("PHONESYNC_FHIR_AUTH") == "oauth2":
            self.refresh()
        else:
            header = env.get("PHONESYNC_FHIR_API_KEY_HEADER", "x-api-key")
            self.session.headers[header] = env["PHONESYNC_FHIR_API_KEY"]

    def refresh(self) -> None:
        reply = requests.post(
            self.env["PHONESYNC_OAUTH_TOKEN_URL"],
            params={"grant_type": "client_credentials"},
            data={
                "client_id": self.env["PHONESYNC_OAUTH_CLIENT_ID"],
                "client_secret": self.env["PHONESYNC_OAUTH_CLIENT_SECRET"],
            },
            timeout=TIMEOUT_S,
        )
        reply.raise_for_status()
        body = reply.json()
        self.session.headers["Authorization"] = f"Bearer {body['access_token']}"
        self.token_expiry = time.monotonic() + int(body["expires_in"]) - 30

    def call(self, method: str, url: str, **kw: Any) -> requests.Response:
        if self.token_expiry and time.monotonic() > self.token_expiry:
            self.refresh()
        try:
            reply = self.session.request(method, url, timeout=TIMEOUT_S, **kw)
        except requests.RequestException:
            self.statuses["error"] += 1
            raise
        self.statuses[str(reply.status_code)] += 1
        reply.raise_for_status()
        return reply


def update(client: Client, nik: str, phone: str) -> str:
    found = client.call(
        "GET", f"{client.base}/Patient", params={"identifier": f"{NIK_SYSTEM}|{nik}"}
    ).json()
    if found.get("total") != 1:
        return "skipped"
    pid = found["entry"][0]["resource"]["id"]
    patient = client.call("GET", f"{client.base}/Patient/{pid}").json()
    client.call(
        "PUT",
        f"{client.base}/Patient/{pid}",
        json=set_mobile(patient, phone),
        headers={"Content-Type": "application/fhir+json"},
    )
    return "written"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--env-file", required=True)
    parser.add_argument("--work", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--limit", type=int, default=None)
    args = parser.parse_args()
    client = Client(read_env(args.env_file))
    outcomes: Counter[str] = Counter()
    work = read_work(args.work, args.limit)
    retry_rows: list[int] = []
    for row, nik, phone in work:
        try:
            outcomes[update(client, nik, phone)] += 1
        except (requests.RequestException, ValueError, KeyError):
            outcomes["failed"] += 1
            retry_rows.append(row)
    requests_total = sum(client.statuses.values())
    write_stats(
        args.out,
        {
            "rows": len(work),
            "outcomes": dict(outcomes),
            "requests": requests_total,
            "retries": 0,
            "by_status": dict(client.statuses),
            "retry_rows": retry_rows,
        },
    )


if __name__ == "__main__":
    main()
