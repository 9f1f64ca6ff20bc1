"""Which PHONESYNC_HASH_KEY a ledger was written with: a keyed check value, never the key.

The ledger finds a NIK again only through its keyed hash (HMAC-SHA256 with PHONESYNC_HASH_KEY).
Under another key every NIK looks new: "already applied" and newer-wins are forgotten, and a
replay of an older date would write an older number over a newer one. So the first sync that uses
a ledger stores `HMAC(key, "phonesync-hash-key-check")` in `service_state` (`hash_key.check`), and
every later one compares before it reads or writes anything; a different key is a configuration
error (exit 2). The check value does not reveal the key and cannot recreate any hash.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime

from sqlalchemy.engine import Engine

from phonesync.errors import ConfigError
from phonesync.ledger import service_state

_LABEL = b"phonesync-hash-key-check"
_SCHEME = "hmac-sha256:"


class HashKeyMismatch(ConfigError):
    """PHONESYNC_HASH_KEY is not the key this ledger was written with."""


def check_value(key: bytes) -> str:
    """The stored check value of `key`: `hmac-sha256:` + 64 hex digits."""
    return _SCHEME + hmac.new(key, _LABEL, hashlib.sha256).hexdigest()


def verify(
    engine: Engine, key: bytes, *, by: str | None = None, now: datetime | None = None
) -> None:
    """Remember `key`'s check value on first use; raise `HashKeyMismatch` for any other key."""
    expected = check_value(key)
    stored = service_state.put_if_absent(
        engine, service_state.HASH_KEY_CHECK, expected, by=by, now=now
    )
    if not hmac.compare_digest(stored, expected):
        raise HashKeyMismatch(
            "PHONESYNC_HASH_KEY differs from the key this ledger was written with; with another "
            "key the ledger no longer recognises any NIK it has seen, so newer-wins and "
            "'already applied' would be lost. Nothing was done. Set the original key again, or "
            "point PHONESYNC_DATABASE_URL at a new ledger (docs/ledger.md: rotating the hash key)"
        )


def recorded_match(engine: Engine, key: bytes) -> bool | None:
    """Read only (`phonesync doctor`): whether `key` is the key the ledger was written with; None
    when no sync has recorded one yet (the first will record this one)."""
    stored = service_state.get(engine, service_state.HASH_KEY_CHECK)
    if stored is None:
        return None
    return hmac.compare_digest(stored, check_value(key))
