"""The `patient_ids` table: NIK keyed hash → IHS patient id (see `fhir/patient_cache.py`)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from phonesync.ledger.bulk import UPSERT_INSERTS
from phonesync.ledger.engine import read_transaction, write_transaction
from phonesync.ledger.schema import patient_ids

_CHUNK = 900  # bound parameters per IN (...): below SQLite's old limit of 999


def _chunks(items: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def lookup(engine: Engine, nik_hashes: Iterable[str]) -> dict[str, str]:
    """The cached patient id of each of these NIK hashes that has one."""
    found: dict[str, str] = {}
    table = patient_ids
    with read_transaction(engine) as conn:
        for chunk in _chunks(list(dict.fromkeys(nik_hashes))):
            query = sa.select(table.c.nik_hash, table.c.patient_id).where(
                table.c.nik_hash.in_(chunk)
            )
            found.update({str(h): str(pid) for h, pid in conn.execute(query)})
    return found


def update(
    engine: Engine, found: Mapping[str, str], gone: Iterable[str], seen_at: datetime
) -> None:
    """Store (or correct) the ids in `found`, forget the hashes in `gone`; one transaction."""
    gone = [h for h in gone if h not in found]
    if not found and not gone:
        return
    with write_transaction(engine) as conn:
        if found:
            insert = UPSERT_INSERTS[conn.dialect.name](patient_ids)
            upsert = insert.on_conflict_do_update(
                index_elements=[patient_ids.c.nik_hash],
                set_={"patient_id": insert.excluded.patient_id, "seen_at": insert.excluded.seen_at},
            )
            rows = [{"nik_hash": h, "patient_id": p, "seen_at": seen_at} for h, p in found.items()]
            conn.execute(upsert, rows)
        for chunk in _chunks(gone):
            conn.execute(sa.delete(patient_ids).where(patient_ids.c.nik_hash.in_(chunk)))
