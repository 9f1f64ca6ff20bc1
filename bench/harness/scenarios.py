"""Scenario files, which sandbox knobs exist right now, and the time bound of a scenario.

A scenario file (`bench/scenarios/E*.toml`) holds sandbox knobs at the top level, named exactly as
the `FhirProfile` fields (`latency_ms`, `rate_limit_rps`, …), and a `[bench]` table for the harness
(title, rows, auth, kill_at_half, delta_share). A knob "exists" when `FhirProfile` has the field
**and** `phonesync sandbox` can be told it (a `--scenario FILE` option, or an option of its own);
a scenario with a missing knob is reported "not run: knob X missing", never approximated.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

SCENARIO_DIR = Path(__file__).resolve().parent.parent / "scenarios"
ALIASES = {  # FhirProfile field → the sandbox's own option, where the name differs
    "rate_limit_rps": ("--rate-limit",),
    "token_lifetime_s": ("--token-lifetime",),
}


@dataclass
class Scenario:
    name: str
    title: str
    knobs: dict[str, Any]
    rows: int | None = None
    auth: str = "api-key"
    kill_at_half: bool = False
    delta_share: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def load(name: str) -> Scenario:
    path = SCENARIO_DIR / f"{name}.toml"
    data = tomllib.loads(path.read_text())
    bench = data.pop("bench", {})
    return Scenario(
        name=name,
        title=bench.get("title", name),
        knobs=data,
        rows=bench.get("rows"),
        auth=bench.get("auth", "api-key"),
        kill_at_half=bool(bench.get("kill_at_half", False)),
        delta_share=float(bench.get("delta_share", 0.0)),
    )


def all_names() -> list[str]:
    names = [p.stem for p in SCENARIO_DIR.glob("E*.toml")]
    return sorted(names, key=lambda n: int(n[1:]))


def sandbox_options() -> dict[str, str]:
    """Option string → argparse dest of `phonesync sandbox`, read from the real parser."""
    from phonesync.cli import build_parser

    parser = build_parser()
    for action in parser._actions:  # argparse has no public API for sub-parsers
        if isinstance(action, argparse._SubParsersAction):
            sandbox = action.choices["sandbox"]
            return {opt: a.dest for a in sandbox._actions for opt in a.option_strings}
    return {}


def profile_fields() -> set[str]:
    from phonesync.sandbox.fhir_server import FhirProfile

    return {f.name for f in dataclasses.fields(FhirProfile)}


def knob_option(knob: str, options: dict[str, str]) -> str | None:
    for option in ("--" + knob.replace("_", "-"), *ALIASES.get(knob, ())):
        if option in options:
            return option
    return None


def missing_knobs(scenario: Scenario) -> list[str]:
    """Knobs the scenario needs that the sandbox cannot be given today (with why)."""
    fields, options = profile_fields(), sandbox_options()
    via_file = "--scenario" in options
    missing = []
    for knob in scenario.knobs:
        if knob not in fields:
            missing.append(f"{knob} (no FhirProfile field)")
        elif not via_file and knob_option(knob, options) is None:
            missing.append(f"{knob} (no `phonesync sandbox` option or --scenario)")
    return missing


def sandbox_args(scenario: Scenario, run_dir: Path) -> list[str]:
    """Command-line arguments that hand the scenario's knobs to `phonesync sandbox`."""
    options = sandbox_options()
    args = ["--auth", scenario.auth]
    if not scenario.knobs:
        return args
    if "--scenario" in options:
        path = run_dir / f"{scenario.name}.knobs.toml"
        path.write_text("".join(f"{k} = {toml_value(v)}\n" for k, v in scenario.knobs.items()))
        return [*args, "--scenario", str(path)]
    for knob, value in scenario.knobs.items():
        option = knob_option(knob, options)
        assert option is not None, knob  # missing_knobs() was checked first
        args += [option, str(value)]
    return args


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


# --- the bound ----------------------------------------------------------------------------------


def lognormal_mean_s(median_ms: float | None, p99_ms: float | None) -> float:
    """Mean of the sandbox's log-normal latency (median, p99; p99 defaults to 2 × median)."""
    if not median_ms:
        return 0.0
    p99 = p99_ms or 2 * median_ms
    sigma = max(0.0, math.log(p99 / median_ms)) / 2.3263
    return median_ms / 1000.0 * math.exp(sigma * sigma / 2)


@dataclass
class Bound:
    """The fastest a contender could possibly be: the largest of three floors, in seconds."""

    rate_s: float
    latency_s: float
    cpu_s: float

    @property
    def seconds(self) -> float:
        return max(self.rate_s, self.latency_s, self.cpu_s)

    @property
    def kind(self) -> str:
        floors = {"rate": self.rate_s, "latency": self.latency_s, "cpu": self.cpu_s}
        return max(floors, key=lambda k: floors[k])


def bound(
    knobs: dict[str, Any],
    reads: int,
    writes: int,
    concurrency: int,
    cpu_s: float,
) -> Bound:
    """`reads`/`writes`: the requests the plan needs at minimum (same for every contender).

    rate: all of them at the published or hidden limit; latency: each request's mean latency
    (plus the per-in-flight slowdown at this concurrency), `concurrency` at a time; cpu: the
    busier of client and server process, each on its own core, measured in this run.
    """
    limit = knobs.get("rate_limit_rps") or knobs.get("hidden_limit_rps")
    rate_s = (reads + writes) / limit if limit else 0.0
    in_flight = min(concurrency, knobs.get("max_in_flight") or concurrency)
    slow = (knobs.get("slowdown_per_inflight_ms") or 0.0) / 1000.0 * in_flight
    read_s = lognormal_mean_s(knobs.get("latency_ms"), knobs.get("latency_p99_ms")) + slow
    write_median = knobs.get("write_latency_ms", knobs.get("latency_ms"))
    write_p99 = knobs.get("write_latency_p99_ms", knobs.get("latency_p99_ms"))
    write_s = lognormal_mean_s(write_median, write_p99) + slow
    latency_s = (reads * read_s + writes * write_s) / max(1, in_flight)
    return Bound(rate_s=rate_s, latency_s=latency_s, cpu_s=cpu_s)
