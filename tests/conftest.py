"""Fixtures shared by the whole suite; keep it small (package fixtures live beside their tests)."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
import sqlalchemy as sa

# The local PostgreSQL that CI starts (trust auth); override for other set-ups.
POSTGRES_ADMIN_URL = os.environ.get(
    "PHONESYNC_TEST_POSTGRES_ADMIN_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A throwaway PostgreSQL database for this session, dropped at the end."""
    if os.environ.get("PHONESYNC_TEST_SKIP_POSTGRES") == "1":
        pytest.skip("PostgreSQL tests opted out with PHONESYNC_TEST_SKIP_POSTGRES=1")
    admin_url = sa.make_url(POSTGRES_ADMIN_URL)
    admin = sa.create_engine(
        admin_url, isolation_level="AUTOCOMMIT", connect_args={"connect_timeout": 5}
    )
    name = f"phonesync_test_{secrets.token_hex(4)}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except sa.exc.OperationalError as exc:
        admin.dispose()
        pytest.fail(
            f"PostgreSQL is needed at {admin_url.render_as_string()} and is not reachable "
            f"({str(exc.orig).strip()}). Start it (CI does), point "
            "PHONESYNC_TEST_POSTGRES_ADMIN_URL elsewhere, or opt out explicitly with "
            "PHONESYNC_TEST_SKIP_POSTGRES=1.",
            pytrace=False,
        )
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


@pytest.fixture
def empty_postgres_url(postgres_url: str) -> str:
    """The session's PostgreSQL database, emptied for this test (tests run one at a time)."""
    engine = sa.create_engine(postgres_url)
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("DROP SCHEMA public CASCADE")
            conn.exec_driver_sql("CREATE SCHEMA public")
    finally:
        engine.dispose()
    return postgres_url
