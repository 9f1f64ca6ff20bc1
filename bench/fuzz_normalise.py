"""Fuzz the three normalisers with random and mutated cells and check their invariants.

    uv run python bench/fuzz_normalise.py --cells 100000 --seed 1

Every cell goes through `parse_nik`, `normalise_phone` (and `canonical_phone` for text) and
`parse_update_time`. A crash or a broken invariant is counted and the first few are shown (the data
is synthetic, so printing it is fine). Prints one JSON line; exit status 1 if anything broke.
`crashes` are exceptions out of a normaliser; `violations` are outputs that break an invariant.
"""

from __future__ import annotations

import argparse
import calendar
import json
import random
import re
import sys
import time
import traceback
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from phonesync.normalise.dates import MAX_YEAR, MIN_YEAR, parse_update_time
from phonesync.normalise.nik import PROVINCE_CODES, Nik, parse_nik
from phonesync.normalise.phone import canonical_phone, normalise_phone
from phonesync.outcomes import Outcome, Rejected

JAKARTA = ZoneInfo("Asia/Jakarta")
MOBILE = re.compile(r"^\+628[0-9]{8,11}$")
NIK_DIGITS = re.compile(r"^[0-9]{16}$")
VALUE_IN_REASON = re.compile(r"[0-9]{5}")
CODE_POINT = re.compile(r"U\+[0-9A-F]{4,6}")
PROVINCES = sorted(PROVINCE_CODES)
# Characters that matter to the normalisers, plus a little of everything else.
ALPHABET = "0123456789" * 4 + " +-.,()/|\\'eEOolI:;_*#\u00a0\u200b\u2013\u00ad٣３WAwa62\n\t"
NOISE = [" ", "\u00a0", ".", "-", "'", ",", "|", "/", "O", "e+", ".0", "E+15", "\u200b", "+", "0"]
PREFIXES = ["", "0", "62", "+62", "0062", "+62 (0) ", "WA: 0", "wa.me/62", "tel:+62", "6262", "00"]
Cell = object


class Breakage(Exception):
    """An invariant did not hold."""


def require(condition: bool, what: str) -> None:
    if not condition:
        raise Breakage(what)


# --- generators --------------------------------------------------------------------------------


def valid_nik(rng: random.Random) -> str:
    month, yy = rng.randint(1, 12), rng.randint(0, 99)
    day = rng.randint(1, calendar.monthrange(2000 + yy, month)[1]) + rng.choice((0, 40))
    region = f"{rng.randrange(10_000):04d}"
    return f"{rng.choice(PROVINCES)}{region}{day:02d}{month:02d}{yy:02d}{rng.randint(1, 9999):04d}"


def valid_national(rng: random.Random) -> str:
    rest = "".join(rng.choice("0123456789") for _ in range(rng.randint(8, 11)))
    return "81" + rest[1:] if rest.startswith(("00", "09")) else "8" + rest


def valid_date_text(rng: random.Random) -> str:
    moment = datetime(2000, 1, 1) + timedelta(seconds=rng.randrange(101 * 365 * 86400))  # noqa: DTZ001
    forms = ("%Y-%m-%d", "%d/%m/%Y %H:%M", "%Y-%m-%dT%H:%M:%S", "%d.%m.%Y", "%d %b %Y", "%d-%m-%Y")
    return moment.strftime(rng.choice(forms))


def mutate(rng: random.Random, text: str) -> str:
    """Insert, delete, replace or swap a few characters; sometimes add noise or a prefix."""
    chars = list(text)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(5)
        pos = rng.randint(0, len(chars))
        if op == 0:
            chars.insert(pos, rng.choice(ALPHABET))
        elif op == 1 and chars:
            del chars[min(pos, len(chars) - 1)]
        elif op == 2 and chars:
            chars[min(pos, len(chars) - 1)] = rng.choice(ALPHABET)
        elif op == 3 and len(chars) > 1:
            i = min(pos, len(chars) - 2)
            chars[i], chars[i + 1] = chars[i + 1], chars[i]
        else:
            chars.insert(pos, rng.choice(NOISE))
    return "".join(chars)


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 30)))


def random_number(rng: random.Random) -> Cell:
    choices: list[Callable[[], Cell]] = [
        lambda: rng.randint(-(10**20), 10**20),
        lambda: rng.randint(0, 10**13),
        lambda: rng.uniform(-1e6, 1e17),
        lambda: rng.uniform(36000, 74000),
        lambda: float(rng.randint(0, 10**16)),
        lambda: rng.choice([float("nan"), float("inf"), -0.0, 2.0**53, True, False, None]),
    ]
    return rng.choice(choices)()


def random_moment(rng: random.Random) -> Cell:
    moment = datetime(1, 1, 1) + timedelta(seconds=rng.randrange(3_155_000_000_00))  # noqa: DTZ001
    zones = [None, UTC, JAKARTA, timezone(timedelta(hours=-12)), timezone(timedelta(hours=14))]
    return rng.choice([moment, moment.date(), moment.replace(tzinfo=rng.choice(zones))])


def make_cell(rng: random.Random) -> Cell:
    valid: list[Callable[[], str]] = [
        lambda: valid_nik(rng),
        lambda: rng.choice(PREFIXES) + valid_national(rng),
        lambda: valid_date_text(rng),
        lambda: valid_national(rng) + " / 0" + valid_national(rng),
    ]
    kind = rng.randrange(10)
    if kind < 3:
        return rng.choice(valid)()
    if kind < 6:
        return mutate(rng, rng.choice(valid)())
    if kind < 8:
        return random_text(rng)
    return random_number(rng) if kind == 8 else random_moment(rng)


# --- invariants --------------------------------------------------------------------------------


def check_rejected(result: Rejected, outcome: Outcome) -> None:
    require(result.outcome is outcome and bool(result.reason), "rejection without reason")
    require(not VALUE_IN_REASON.search(CODE_POINT.sub("", result.reason)), "value in reason")


def check_nik(cell: Cell) -> bool:
    result = parse_nik(cell)
    if isinstance(result, Rejected):
        check_rejected(result, Outcome.INVALID_NIK)
        return False
    require(isinstance(cell, str), "non-text NIK accepted")
    require(bool(NIK_DIGITS.match(result.value)), "not 16 digits")
    require(result.province in PROVINCE_CODES and result.value[12:] != "0000", "province/serial")
    month_days = calendar.monthrange(2000 + result.birth_yy, result.birth_month)[1]
    require(1 <= result.birth_day <= month_days, "birth date does not exist")
    require(parse_nik(result.value) == result and isinstance(result, Nik), "not idempotent")
    return True


def check_phone(cell: Cell) -> bool:
    result = normalise_phone(cell)
    if isinstance(cell, str):
        canonical = canonical_phone(cell)
        require(canonical == (result if isinstance(result, str) else None), "canonical disagrees")
    if isinstance(result, Rejected):
        check_rejected(result, Outcome.INVALID_PHONE)
        return False
    require(bool(MOBILE.match(result)), "not +628 E.164")
    require(not result.startswith(("+6262", "+62800", "+62809")), "+6262 or 0800/0809")
    require(normalise_phone(result) == result, "not idempotent")
    return True


def check_date(cell: Cell) -> bool:
    result = parse_update_time(cell, JAKARTA)
    if isinstance(result, Rejected):
        check_rejected(result, Outcome.INVALID_DATE)
        return False
    require(result.tzinfo is JAKARTA, "not in the zone")
    require(MIN_YEAR <= result.year <= MAX_YEAR, "year out of range")
    require(parse_update_time(result, JAKARTA) == result, "not idempotent")
    require(parse_update_time(result.isoformat(), JAKARTA) == result, "ISO text differs")
    return True


CHECKS: dict[str, Callable[[Cell], bool]] = {
    "nik": check_nik,
    "phone": check_phone,
    "date": check_date,
}


def run(cells: int, seed: int) -> dict[str, object]:
    rng = random.Random(seed)
    counts = {name: Counter[str]() for name in CHECKS}
    failures: list[str] = []
    started, cpu_started = time.perf_counter(), time.process_time()
    for _ in range(cells):
        cell = make_cell(rng)
        for name, check in CHECKS.items():
            try:
                counts[name]["accepted" if check(cell) else "refused"] += 1
            except Exception as exc:  # noqa: BLE001 — a fuzzer counts every crash and goes on
                counts[name]["violations" if isinstance(exc, Breakage) else "crashes"] += 1
                if len(failures) < 5:
                    failures.append(f"{name} {cell!r}: {exc!r}\n{traceback.format_exc(limit=3)}")
    seconds, cpu_seconds = time.perf_counter() - started, time.process_time() - cpu_started
    for failure in failures:
        print(failure, file=sys.stderr)
    summary: dict[str, object] = {"cells": cells, "seed": seed}
    for name, counter in counts.items():
        summary[name] = {key: counter[key] for key in ("accepted", "refused")}
    for key in ("crashes", "violations"):
        summary[key] = sum(counter[key] for counter in counts.values())
    summary["seconds"] = round(seconds, 2)
    summary["cpu_seconds"] = round(cpu_seconds, 2)  # wall time varies with the machine's load
    return summary


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    summary = run(args.cells, args.seed)
    print(json.dumps(summary, separators=(",", ":")))
    return 1 if summary["crashes"] or summary["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
