"""Retrain: runs retraining jobs (from drift events, schedules, operators), one per model."""
