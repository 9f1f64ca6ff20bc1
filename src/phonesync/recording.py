"""What the ledger keeps of a row: masked values and keyed hashes only, never clear text."""

from __future__ import annotations

from phonesync.ledger.store import LedgerRow
from phonesync.masking import mask_nik, mask_phone, redact
from phonesync.outcomes import RowResult
from phonesync.plan import EarlyResult, WorkItem


def early_row(early: EarlyResult) -> LedgerRow:
    """The record of a row that ended without the FHIR server (invalid, superseded, settled)."""
    r = early.result
    return LedgerRow(
        row=r.row,
        nik_hash=early.nik_hash,
        nik_masked=early.nik_masked,
        phone_hash=early.phone_hash,
        phone_masked=early.phone_masked,
        moment=early.moment,
        outcome=r.outcome,
        reason=r.reason,
        patient_id=r.patient_id,
        attempts=0,
        fingerprint=early.fingerprint,
    )


def work_row(item: WorkItem, r: RowResult) -> LedgerRow:
    """The record of a row that went to the FHIR server."""
    return LedgerRow(
        row=r.row,
        nik_hash=item.nik_hash,
        nik_masked=mask_nik(item.nik.value),
        phone_hash=item.phone_hash,
        phone_masked=mask_phone(item.phone),
        moment=item.moment,
        outcome=r.outcome,
        reason=redact(r.reason) if r.reason else None,
        patient_id=r.patient_id,
        version_before=r.version_before,
        version_after=r.version_after,
        attempts=r.attempts,
        fingerprint=item.fingerprint,
    )
