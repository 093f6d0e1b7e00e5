"""Ingest: validates camera frames, drops duplicates, rate-limits, dead-letters rejects."""
