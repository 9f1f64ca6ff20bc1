"""`phonesync serve`: one ASGI app — health, metrics, the scheduler's control and the dashboard."""
