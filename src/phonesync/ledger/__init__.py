"""The ledger: what every run did, row by row, and what was applied to FHIR (docs/ledger.md)."""

from phonesync.ledger.hash_key import HashKeyMismatch
from phonesync.ledger.migrate import LedgerVersionError
from phonesync.ledger.records import (
    Applied,
    LockRecord,
    ResultRecord,
    RunRecord,
    RunStatus,
    Trigger,
)
from phonesync.ledger.store import Ledger, LedgerRow, default_owner, new_run_id

__all__ = [
    "Applied",
    "HashKeyMismatch",
    "Ledger",
    "LedgerRow",
    "LedgerVersionError",
    "LockRecord",
    "ResultRecord",
    "RunRecord",
    "RunStatus",
    "Trigger",
    "default_owner",
    "new_run_id",
]
