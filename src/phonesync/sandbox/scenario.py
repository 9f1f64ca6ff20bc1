"""Sandbox scenarios: a TOML file of `FhirProfile` knobs, and the matching command-line options.

A scenario file sets knobs at its top level, named exactly as the profile fields::

    # 50 req/s, Apigee spike arrest, no Retry-After
    latency_ms = 120
    latency_p99_ms = 800
    rate_limit_rps = 50
    rate_limit_mode = "spike-arrest"

Tables (`[bench]`, …) belong to other tools and are ignored; an unknown top-level key or a value of
the wrong type is an error naming it. Precedence: profile defaults < scenario file < explicit
command-line options (`--latency-ms 50`).
"""

from __future__ import annotations

import argparse
import dataclasses
import tomllib
import types
import typing
from pathlib import Path
from typing import Any

from phonesync.sandbox.fhir_profile import KNOBS, RATE_LIMIT_MODES, RETRY_AFTER_STYLES, FhirProfile

#: Older option names kept working (`--rate-limit 50` = `--rate-limit-rps 50`).
ALIASES: dict[str, tuple[str, ...]] = {
    "rate_limit_rps": ("--rate-limit",),
    "token_lifetime_s": ("--token-lifetime",),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "rate_limit_mode": RATE_LIMIT_MODES,
    "retry_after": RETRY_AFTER_STYLES,
}
_HINTS = typing.get_type_hints(FhirProfile)


class ScenarioError(ValueError):
    """A scenario file that cannot be used; the message names the file and the key."""


def _base_type(name: str) -> type:
    """The scalar type of a knob: `float | None` → float, `Literal[...]` → str."""
    hint = _HINTS[name]
    args = [a for a in typing.get_args(hint) if a is not type(None)]
    if typing.get_origin(hint) is typing.Literal:
        return str
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = args[0]
    return hint if isinstance(hint, type) else str


def _coerce(name: str, value: Any, where: str) -> Any:
    kind = _base_type(name)
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
        raise ScenarioError(f"{where}: {name} must be {kind.__name__}, not {value!r}")
    return value


def load_scenario(path: Path) -> dict[str, Any]:
    """The knobs a scenario file sets (validated by name and type, not yet by value)."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ScenarioError(f"{path}: cannot read the scenario ({exc})") from None
    knobs: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, dict):
            continue  # another tool's table
        if key not in KNOBS:
            raise ScenarioError(f"{path}: unknown sandbox knob {key!r} (see docs/sandbox.md)")
        knobs[key] = _coerce(key, value, str(path))
    return knobs


def profile_with(base: FhirProfile, knobs: dict[str, Any]) -> FhirProfile:
    """`base` with these knobs changed; ValueError naming every impossible value."""
    return dataclasses.replace(base, **knobs)


def add_knob_options(parser: argparse.ArgumentParser) -> None:
    """`--scenario FILE` and one option per knob (`--rate-limit-rps`, …), all unset by default."""
    parser.add_argument(
        "--scenario", type=Path, default=None, help="TOML file of sandbox knobs (docs/sandbox.md)"
    )
    for name in KNOBS:
        if name == "seed":
            continue  # `--seed` (the synthetic data's) seeds the profile too
        flag = "--" + name.replace("_", "-")
        kind = _base_type(name)
        extra: dict[str, Any] = {"choices": _CHOICES[name]} if name in _CHOICES else {}
        if kind is bool:
            extra["action"] = argparse.BooleanOptionalAction
        else:
            extra["type"] = kind
        parser.add_argument(
            flag,
            *ALIASES.get(name, ()),
            dest=name,
            default=None,
            help=f"sandbox knob {name}",
            **extra,
        )


def profile_from_args(args: argparse.Namespace, **fixed: Any) -> FhirProfile:
    """Profile defaults, then `--scenario`, then explicit knob options, then `fixed` (e.g. seed)."""
    knobs: dict[str, Any] = {}
    scenario = getattr(args, "scenario", None)
    if scenario is not None:
        knobs |= load_scenario(scenario)
    knobs |= {n: getattr(args, n) for n in KNOBS if getattr(args, n, None) is not None}
    return profile_with(FhirProfile(**fixed), knobs)


def knob_args(args: argparse.Namespace) -> list[str]:
    """The knob options set in `args`, as `phonesync sandbox` arguments (for a subprocess)."""
    out: list[str] = []
    if getattr(args, "scenario", None) is not None:
        out += ["--scenario", str(args.scenario)]
    for name in KNOBS:
        value = getattr(args, name, None)
        if value is None or name == "seed":
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + flag[2:])
        else:
            out += [flag, str(value)]
    return out
