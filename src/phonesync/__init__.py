"""phonesync: nightly phone-number sync from a Google Sheet to the national FHIR server."""

__version__ = "0.1.0"
