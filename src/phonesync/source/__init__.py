"""Where the day's rows come from: the Google Sheet, or a CSV/XLSX export of it."""
