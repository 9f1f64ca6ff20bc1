"""A sandbox FHIR server on loopback and a `requests` client for it (see `conftest.start`)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import requests

from phonesync.sandbox.fhir_server import PatientStore

KEY = {"x-api-key": "sandbox-key"}
FHIR_JSON = {"Content-Type": "application/fhir+json", **KEY}
PATCH_JSON = {"Content-Type": "application/json-patch+json", **KEY}


@dataclass
class Sandbox:
    """One running sandbox: its store, its URL, and a session sending the API key by default."""

    store: PatientStore
    url: str
    http: requests.Session = field(default_factory=requests.Session)

    def get(self, path: str, headers: dict[str, str] | None = None, **kw: Any) -> requests.Response:
        return self.http.get(self.url + path, headers=KEY if headers is None else headers, **kw)

    def post(
        self, body: Any, path: str = "/fhir-r4/v1", headers: dict[str, str] | None = None
    ) -> requests.Response:
        data = body if isinstance(body, str) else json.dumps(body)
        return self.http.post(self.url + path, data=data, headers=FHIR_JSON | (headers or {}))

    def put(self, path: str, body: Any, headers: dict[str, str] | None = None) -> requests.Response:
        return self.http.put(
            self.url + path, data=json.dumps(body), headers=FHIR_JSON | (headers or {})
        )

    def patch(
        self, path: str, ops: Any, headers: dict[str, str] | None = None
    ) -> requests.Response:
        return self.http.patch(
            self.url + path, data=json.dumps(ops), headers=PATCH_JSON | (headers or {})
        )


#: `start(profile=None, clock=time.monotonic)`: a new sandbox seeded with `sandbox_patients`.
Start = Callable[..., Sandbox]
