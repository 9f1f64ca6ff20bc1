"""Everything that talks to the FHIR server for one row (see docs/architecture.md).

`classify` (what an HTTP outcome means) · `auth` (API key / OAuth2) · `pacing` (concurrency and
rate) · `background` (steady faults told from overload) · `http` (`FhirHttp`, the one retry
loop) · `telecom` and `identity` (pure decisions on Patient JSON) · `updater` (one row: search →
read → decide → write).
"""
