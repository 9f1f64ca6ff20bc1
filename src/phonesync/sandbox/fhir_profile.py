"""`FhirProfile`: how the sandbox FHIR server behaves — the knobs of `phonesync sandbox`.

Identity (auth, allowed writes, PATCH rules) is set by `--auth`/`--write-mode`; everything in
`KNOBS` can also come from a scenario file (`--scenario FILE.toml`, see `scenario.py`) or from a
command-line option of the same name (`rate_limit_rps` → `--rate-limit-rps`). docs/sandbox.md
describes each knob; `fhir_gateway.py` implements them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Literal

RateLimitMode = Literal["token-bucket", "spike-arrest"]
RetryAfterStyle = Literal["seconds", "http-date", "none"]
RATE_LIMIT_MODES: tuple[str, ...] = ("token-bucket", "spike-arrest")
RETRY_AFTER_STYLES: tuple[str, ...] = ("seconds", "http-date", "none")


@dataclass
class FhirProfile:
    """How the sandbox behaves: auth, writes, PATCH rules, latency, limits, faults and batch."""

    auth: Literal["api-key", "oauth2"] = "api-key"
    api_key: str = "sandbox-key"
    api_key_header: str = "x-api-key"
    client_id: str = "sandbox-client"
    client_secret: str = "sandbox-secret"
    write_modes: frozenset[str] = frozenset({"put", "patch"})
    national_patch: bool = True
    # -- latency: log-normal, median and p99 (p99 unset = 2 × median); writes separately ------
    latency_ms: float = 0.0
    latency_p99_ms: float | None = None
    write_latency_ms: float | None = None  # unset: writes get the read/search latency
    write_latency_p99_ms: float | None = None
    slowdown_per_inflight_ms: float = 0.0  # added per request already in flight
    # -- limits -----------------------------------------------------------------------------
    rate_limit_rps: float | None = None
    rate_limit_burst: int = 10
    rate_limit_mode: RateLimitMode = "token-bucket"
    retry_after: RetryAfterStyle = "seconds"
    hidden_limit_rps: float | None = None  # 429 without Retry-After above this many req/s
    max_in_flight: int | None = None  # 503 above this many requests in flight
    # -- faults (shares of requests, each drawn independently) -------------------------------
    error_rate: float = 0.0  # 500/502/503/504
    plain_text_share: float = 1.0  # of those, text/plain (the rest OperationOutcome JSON)
    reset_rate: float = 0.0  # connection reset, no answer
    hang_rate: float = 0.0  # no answer for `hang_s` (the client times out first)
    hang_s: float = 600.0
    stray_429_rate: float = 0.0  # 429 without Retry-After, whatever the rate
    # -- tokens, outages ---------------------------------------------------------------------
    token_lifetime_s: int = 3599
    outage_start_s: float | None = None  # seconds after the server started
    outage_duration_s: float = 0.0
    # -- FHIR batch Bundles (off: the national server does not advertise them) ---------------
    batch: bool = False  # `POST` a `type: batch` Bundle to the base; CapabilityStatement says so
    batch_max_entries: int = 100  # more entries in one Bundle: 413
    seed: int = 0

    def __post_init__(self) -> None:
        problems = [why for why in _problems(self) if why]
        if problems:
            raise ValueError("sandbox profile: " + "; ".join(problems))


_IDENTITY = frozenset(
    {"auth", "api_key", "api_key_header", "client_id", "client_secret", "write_modes"}
) | {"national_patch"}
#: The behaviour knobs a scenario file or a command-line option may set.
KNOBS: tuple[str, ...] = tuple(f.name for f in fields(FhirProfile) if f.name not in _IDENTITY)

_SHARES = ("error_rate", "plain_text_share", "reset_rate", "hang_rate", "stray_429_rate")
_POSITIVE_OR_UNSET = ("rate_limit_rps", "hidden_limit_rps", "max_in_flight")
_NON_NEGATIVE = (
    "latency_ms",
    "slowdown_per_inflight_ms",
    "outage_duration_s",
    "hang_s",
)


def _problems(p: FhirProfile) -> list[str]:
    out = [f"{n} must be between 0 and 1" for n in _SHARES if not 0.0 <= getattr(p, n) <= 1.0]
    unset_or = [(n, getattr(p, n)) for n in _POSITIVE_OR_UNSET]
    out += [f"{n} must be positive" for n, v in unset_or if v is not None and v <= 0]
    out += [f"{n} must not be negative" for n in _NON_NEGATIVE if getattr(p, n) < 0]
    if p.rate_limit_mode not in RATE_LIMIT_MODES:
        out.append(f"rate_limit_mode must be one of {', '.join(RATE_LIMIT_MODES)}")
    if p.retry_after not in RETRY_AFTER_STYLES:
        out.append(f"retry_after must be one of {', '.join(RETRY_AFTER_STYLES)}")
    if p.token_lifetime_s < 1:
        out.append("token_lifetime_s must be at least 1")
    if p.rate_limit_burst < 1:
        out.append("rate_limit_burst must be at least 1")
    if p.batch_max_entries < 1:
        out.append("batch_max_entries must be at least 1")
    return out
