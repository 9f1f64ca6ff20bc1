"""Scenario files and knob options: TOML → FhirProfile, precedence, errors naming the key."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from phonesync.sandbox.fhir_profile import KNOBS, FhirProfile
from phonesync.sandbox.scenario import (
    ScenarioError,
    add_knob_options,
    knob_args,
    load_scenario,
    profile_from_args,
)

BENCH_SCENARIOS = sorted((Path(__file__).parents[2] / "bench" / "scenarios").glob("*.toml"))


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=1)
    add_knob_options(parser)
    return parser.parse_args(argv)


def test_scenario_sets_knobs_and_ignores_other_tools_tables(tmp_path: Path) -> None:
    """Top-level keys are knobs (ints accepted for floats); a [bench] table is ignored."""
    path = tmp_path / "e3.toml"
    path.write_text(
        'latency_ms = 120\nrate_limit_rps = 50\nrate_limit_mode = "spike-arrest"\n'
        'retry_after = "none"\nmax_in_flight = 8\n[bench]\ntitle = "x"\n'
    )
    profile = profile_from_args(parse("--scenario", str(path)), seed=1)
    assert (profile.latency_ms, profile.rate_limit_rps) == (120.0, 50.0)
    assert (profile.rate_limit_mode, profile.retry_after, profile.max_in_flight) == (
        "spike-arrest",
        "none",
        8,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("rate_limit = 5\n", "unknown sandbox knob 'rate_limit'"),
        ('latency_ms = "fast"\n', "latency_ms must be float"),
        ("max_in_flight = true\n", "max_in_flight must be int"),
        ("max_in_flight = 2.5\n", "max_in_flight must be int"),
        ("latency_ms = \n", "cannot read"),
    ],
)
def test_bad_scenarios_name_the_key(tmp_path: Path, text: str, message: str) -> None:
    """Unknown keys, wrong types and bad TOML are refused with the key's name."""
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(ScenarioError, match=message):
        load_scenario(path)


def test_command_line_options_override_the_scenario(tmp_path: Path) -> None:
    """defaults < scenario < options; old names (--rate-limit, --token-lifetime) still work."""
    path = tmp_path / "s.toml"
    path.write_text("latency_ms = 120\nerror_rate = 0.01\nrate_limit_rps = 50\n")
    args = parse("--scenario", str(path), "--latency-ms", "5", "--rate-limit", "7")
    profile = profile_from_args(args)
    assert (profile.latency_ms, profile.error_rate, profile.rate_limit_rps) == (5.0, 0.01, 7.0)
    assert profile.seed == 1  # --seed seeds the data and the profile
    assert parse("--token-lifetime", "60").token_lifetime_s == 60
    assert profile_from_args(parse()) == FhirProfile(seed=1)


def test_knob_args_round_trip_to_the_same_profile(tmp_path: Path) -> None:
    """The options a demo passes to its sandbox subprocess rebuild the same profile."""
    args = parse("--hang-rate", "0.002", "--retry-after", "http-date", "--max-in-flight", "8")
    again = parse(*knob_args(args))
    assert profile_from_args(again) == profile_from_args(args)
    assert profile_from_args(again).max_in_flight == 8


def test_every_knob_has_an_option() -> None:
    """Each FhirProfile knob is a `phonesync sandbox` option of the same name (seed: --seed)."""
    args = parse()
    assert {name for name in KNOBS if hasattr(args, name)} == set(KNOBS)


@pytest.mark.parametrize("path", BENCH_SCENARIOS, ids=lambda p: p.stem)
def test_bench_scenarios_load(path: Path) -> None:
    """Every scenario the benchmark uses is a valid profile."""
    profile = profile_from_args(parse("--scenario", str(path)))
    assert isinstance(profile, FhirProfile)
