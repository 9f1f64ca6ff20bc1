"""Local stand-ins for the national FHIR server and the Google Sheets API."""
