"""Model versions: retraining jobs, promotion and rollback through Triton, with lineage.

- ``job_states``: the retraining job's state machine (plain functions).
- ``version_policy``: the ``version_policy`` of a model's ``config.pbtxt`` (plain text rewrite).
- ``versions``: a model's version folders, and which version serves.
- ``store``: the ``retrain_jobs`` and ``model_versions`` tables (migration 0004).
- ``promotion``: ``promote`` and ``rollback`` through Triton's model-control API.
"""
