"""Rules: per-camera rules turn predictions into alerts in PostgreSQL and on the alert topic."""
