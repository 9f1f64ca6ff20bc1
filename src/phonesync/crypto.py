"""Encryption at rest for personal data the ledger must keep (frozen inputs, scale-out queues).

Fernet (AES-128-CBC + HMAC-SHA256, from `cryptography`) with keys from `PHONESYNC_SNAPSHOT_KEY`
(one key, or several separated by commas: the first encrypts, all decrypt — for key rotation).
"""

from __future__ import annotations

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from phonesync.errors import ConfigError


class Sealer:
    """Encrypts and decrypts small blobs; never logs or returns the plaintext on failure."""

    def __init__(self, keys: str) -> None:
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise ConfigError("PHONESYNC_SNAPSHOT_KEY is empty")
        try:
            self._fernet = MultiFernet([Fernet(k.encode()) for k in parts])
        except ValueError:
            raise ConfigError(
                "PHONESYNC_SNAPSHOT_KEY must be Fernet keys (32 url-safe base64 bytes); "
                "make one with `phonesync keygen`"
            ) from None

    def seal(self, plaintext: bytes) -> bytes:
        return self._fernet.encrypt(plaintext)

    def unseal(self, token: bytes) -> bytes:
        try:
            return self._fernet.decrypt(token)
        except InvalidToken:
            raise ConfigError(
                "cannot decrypt stored data with PHONESYNC_SNAPSHOT_KEY (was the key rotated "
                "without keeping the old one?)"
            ) from None


def new_key() -> str:
    return Fernet.generate_key().decode()
