"""Tests of the sandbox stand-ins (FHIR server, gateway, Sheets API, synthetic data)."""
