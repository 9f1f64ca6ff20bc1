"""Dashboard users from configuration, their argon2 password hashes, and `phonesync hash-password`.

`PHONESYNC_DASHBOARD_USERS` holds entries `name:role:hash` (role `viewer` or `operator`, hash an
argon2 encoded hash). Entries are separated by newlines, semicolons or commas: a comma inside a
hash (`m=65536,t=3,p=4`) is never taken for a separator, because a new entry must start with
`name:role:`.
"""

from __future__ import annotations

import argparse
import getpass
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from argon2 import PasswordHasher, extract_parameters
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from phonesync.errors import ConfigError

Role = Literal["viewer", "operator"]
ROLES: tuple[Role, ...] = ("viewer", "operator")
_ROLE_OF: dict[str, Role] = {role: role for role in ROLES}
_NAME = r"[A-Za-z0-9._@+-]+"
_ENTRY_START = re.compile(rf"[\s,;]+(?={_NAME}:(?:viewer|operator):)")
_ENTRY = re.compile(rf"({_NAME}):(viewer|operator):(\$argon2(?:id|i|d)\$\S+)")


@dataclass(frozen=True, slots=True)
class User:
    """A configured dashboard user (the hash stays here, never in a page or log)."""

    name: str
    role: Role
    password_hash: str


def parse_users(text: str | None) -> dict[str, User]:
    """Users from the setting's text; a `ConfigError` names the bad entry by position only."""
    users: dict[str, User] = {}
    if not text or not text.strip():
        return users
    for number, entry in enumerate(_ENTRY_START.split(text.strip()), start=1):
        match = _ENTRY.fullmatch(entry.strip().rstrip(",;"))
        if match is None:
            raise ConfigError(
                f"PHONESYNC_DASHBOARD_USERS: entry {number} is not `name:viewer|operator:"
                "$argon2…` (make hashes with `phonesync hash-password`)"
            )
        name, role, hashed = match.groups()
        if name.lower() in users:
            raise ConfigError(f"PHONESYNC_DASHBOARD_USERS: user {name!r} is listed twice")
        users[name.lower()] = User(name=name, role=_ROLE_OF[role], password_hash=hashed)
    return users


class PasswordCheck:
    """Verifies passwords in about the same time whether or not the user exists."""

    def __init__(self, users: Mapping[str, User]) -> None:
        self._users = dict(users)
        self._hasher = PasswordHasher()
        self._decoy: str | None = None

    def _decoy_hash(self) -> str:
        """A hash of nothing anyone can type, with the users' own cost parameters: checked for
        unknown names so that timing does not tell which names exist."""
        if self._decoy is None:
            hasher = self._hasher
            first = next(iter(self._users.values()), None)
            if first is not None:
                hasher = PasswordHasher.from_parameters(extract_parameters(first.password_hash))
            self._decoy = hasher.hash("\x00 no such user \x00")
        return self._decoy

    @property
    def users(self) -> Mapping[str, User]:
        return self._users

    def verify(self, name: str, password: str) -> User | None:
        """The user when the password matches, else None."""
        user = self._users.get(name.strip().lower())
        try:
            self._hasher.verify(user.password_hash if user else self._decoy_hash(), password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return None
        return user


def add_hash_password_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """`phonesync hash-password [--user NAME --role ROLE]`."""
    parser = sub.add_parser(
        "hash-password",
        help="hash a dashboard password (argon2) for PHONESYNC_DASHBOARD_USERS",
        description="Reads a password (prompted twice on a terminal, else the first line of "
        "standard input) and prints its argon2 hash, or a whole `name:role:hash` entry.",
    )
    parser.add_argument("--user", help="print a whole entry for this user name")
    parser.add_argument("--role", choices=ROLES, default="viewer", help="role of --user")


def _read_password() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise ConfigError("the two passwords differ")
    return first


def cmd_hash_password(args: argparse.Namespace) -> int:
    """Print the hash (or entry) of a password; never echoes the password."""
    password = _read_password()
    if len(password) < 12:
        raise ConfigError("use a password of at least 12 characters")
    hashed = PasswordHasher().hash(password)
    if args.user:
        if not re.fullmatch(_NAME, args.user):
            raise ConfigError("user names may hold letters, digits and . _ @ + - only")
        hashed = f"{args.user}:{args.role}:{hashed}"
    sys.stdout.write(hashed + "\n")
    return 0
