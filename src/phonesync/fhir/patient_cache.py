"""NIK → Patient id, remembered in the ledger so that a known patient costs a read + a write.

IHS patient ids are stable, so a NIK seen once need not be searched again: the planner's
`WorkItem.patient_id` carries the id the ledger's `patient_ids` table holds for the NIK's keyed
hash (never the NIK itself). It is only a hint. The updater reads `Patient/{id}` and uses it only
if that resource still carries exactly our NIK identifier (system and value); otherwise (gone,
merged, re-identified) it searches as if nothing were cached, and the cache is corrected from the
row's result: a search that found one patient stores its id, a search that found none removes the
entry. What the cache cannot see is a *second* patient registered later under the same NIK;
`phonesync run` with `PHONESYNC_PATIENT_ID_CACHE=false` searches every row (docs/resilience.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from phonesync.outcomes import Outcome, RowResult
from phonesync.plan import WorkItem

#: Outcomes after which `RowResult.patient_id` is the one patient carrying the row's NIK.
_IDENTIFIED = frozenset(
    {Outcome.UPDATED, Outcome.UNCHANGED, Outcome.IDENTITY_MISMATCH, Outcome.CONFLICT}
)

#: Outcomes after which the NIK has no single patient: a cached id must go.
_UNIDENTIFIED = frozenset({Outcome.PATIENT_NOT_FOUND, Outcome.AMBIGUOUS_PATIENT})


def with_cached_ids(work: Iterable[WorkItem], ids: Mapping[str, str]) -> list[WorkItem]:
    """The work items, each with the cached patient id of its NIK hash (if any)."""
    return [
        replace(item, patient_id=ids[item.nik_hash]) if item.nik_hash in ids else item
        for item in work
    ]


@dataclass
class CacheChanges:
    """What a run learnt about NIK → patient id, to be written with the next checkpoint."""

    found: dict[str, str] = field(default_factory=dict)
    gone: set[str] = field(default_factory=set)

    def learn(self, item: WorkItem, result: RowResult) -> None:
        """Update from one finished row; rows that tell nothing change nothing."""
        pid = result.patient_id
        if result.outcome in _IDENTIFIED and pid and pid != item.patient_id:
            self.found[item.nik_hash] = pid
            self.gone.discard(item.nik_hash)
        elif result.outcome in _UNIDENTIFIED and item.patient_id is not None:
            self.gone.add(item.nik_hash)
            self.found.pop(item.nik_hash, None)

    def take(self) -> tuple[dict[str, str], set[str]]:
        """The changes so far (and forget them)."""
        found, gone = self.found, self.gone
        self.found, self.gone = {}, set()
        return found, gone

    def __bool__(self) -> bool:
        return bool(self.found or self.gone)
