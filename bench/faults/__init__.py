"""Fault-injection runs: kill the server, Redis or PostgreSQL connections under load, then check the money."""
