"""Every exception phonesync raises on purpose, grouped by what the caller does about it.

    PhonesyncError               root: catch this to catch everything of ours
    ├── ConfigError              a setting is missing, malformed or contradictory     (exit 2)
    ├── RunAborted               fatal for the run: stop, record what was done, alert
    │   ├── SourceUnavailable    the sheet cannot be read: auth, permission, quota     (exit 3)
    │   │   └── SheetLayoutError the sheet was read but its header cannot be mapped   (exit 3)
    │   ├── FhirUnavailable      the FHIR server is down or refuses our credentials   (exit 4)
    │   └── LedgerUnavailable    the ledger database cannot be reached                 (exit 6)
    ├── RunInProgress            another run for the same business date holds the lock (exit 5)
    └── RequestFailed            one HTTP exchange ended badly; the row decides what it means
        ├── RetryableError       408/429/5xx/network: back off and try again (bounded)
        └── RejectedError        other 4xx: retrying cannot help; the row ends `failed`

Row-level problems (a bad NIK, a missing patient) are *not* exceptions: they are recorded as the
row's outcome and the run goes on. Every exception carries its evidence (HTTP status, masked
OperationOutcome text, sheet row number) and never a raw NIK, phone number, key or token.
"""

from __future__ import annotations


class PhonesyncError(Exception):
    """Root of phonesync's own exceptions."""

    exit_code: int = 1


class ConfigError(PhonesyncError):
    """A setting is missing, malformed or contradicts another one."""

    exit_code = 2


class RunAborted(PhonesyncError):
    """The run cannot do its job; stop, keep what was recorded, report `failed`."""

    exit_code = 1


class SourceUnavailable(RunAborted):
    """The sheet (or file) could not be read: authentication, permission, quota or network."""

    exit_code = 3


class SheetLayoutError(SourceUnavailable):
    """The sheet was read but its header cannot be mapped (duplicate or missing columns)."""


class FhirUnavailable(RunAborted):
    """The FHIR server is unreachable, or refuses our credentials after one re-authentication."""

    exit_code = 4


class LedgerUnavailable(RunAborted):
    """The ledger database is unreachable: nothing can be recorded, so nothing is done."""

    exit_code = 6


class RunInProgress(PhonesyncError):
    """Another process holds the lock for this business date."""

    exit_code = 5


class RequestFailed(PhonesyncError):
    """One HTTP exchange failed; `status` is None for network errors."""

    def __init__(self, message: str, *, status: int | None = None, detail: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.detail = detail  # masked OperationOutcome diagnostics or response text


class RetryableError(RequestFailed):
    """Worth retrying: 408, 429, 5xx, connection reset, timeout."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        detail: str = "",
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message, status=status, detail=detail)
        self.retry_after = retry_after


class RejectedError(RequestFailed):
    """The server refused the request for good (4xx other than 401/403/408/409/412/429)."""
