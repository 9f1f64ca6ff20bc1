"""Row outcomes (docs/outcomes.md) and the small value types that carry them."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    """Exactly one of these ends every in-scope row (contract.md, "Row outcomes")."""

    UPDATED = "updated"
    UNCHANGED = "unchanged"
    SUPERSEDED = "superseded"
    INVALID_NIK = "invalid_nik"
    INVALID_PHONE = "invalid_phone"
    INVALID_DATE = "invalid_date"
    PATIENT_NOT_FOUND = "patient_not_found"
    AMBIGUOUS_PATIENT = "ambiguous_patient"
    IDENTITY_MISMATCH = "identity_mismatch"
    CONFLICT = "conflict"
    FAILED = "failed"


#: Outcomes that count towards the failure ratio (the alert threshold).
FAILURE_OUTCOMES = frozenset({Outcome.FAILED, Outcome.CONFLICT})
#: Outcomes `phonesync retry` re-processes.
RETRYABLE_OUTCOMES = frozenset({Outcome.FAILED, Outcome.CONFLICT})
#: Outcomes that leave a row content open for catch-up (`ledger/history.py`): the retryable ones,
#: and `patient_not_found` (the patient may be registered later, or the NIK system was wrong).
OPEN_OUTCOMES = RETRYABLE_OUTCOMES | {Outcome.PATIENT_NOT_FOUND}
#: Outcomes of a row refused by validation (the run's invalid share, `PHONESYNC_INVALID_THRESHOLD`).
INVALID_OUTCOMES = (Outcome.INVALID_NIK, Outcome.INVALID_PHONE, Outcome.INVALID_DATE)


@dataclass(frozen=True, slots=True)
class Rejected:
    """A value that cannot be used, with the outcome and an operator-readable reason.

    Returned (not raised) by the pure validators in `phonesync.normalise`; the reason never
    contains the raw value.
    """

    outcome: Outcome
    reason: str


@dataclass(frozen=True, slots=True)
class RowResult:
    """What happened to one sheet row; one of these is recorded in the ledger per in-scope row.

    `old_phone`/`new_phone` are E.164 numbers held only in memory; the ledger stores them masked.
    """

    row: int
    outcome: Outcome
    reason: str | None = None
    patient_id: str | None = None
    version_before: str | None = None
    version_after: str | None = None
    attempts: int = 0
    old_phone: str | None = None
    new_phone: str | None = None
