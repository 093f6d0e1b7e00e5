"""Retraining jobs: from a drift event, a schedule or an operator to a promoted or rejected
candidate version.

- ``policy``: plain decisions: which model a drift retrains, the job's dataset plan, and
  whether a candidate is promoted (``decide_promotion``).
- ``jobs``: the ``retrain_jobs`` rows as the worker uses them: debounced creation
  (``jobs_for_drift``, ``create_job_once``) and ``run_job``, which drives a job's state machine
  through injected steps.
- ``steps``: the real steps: generator dataset, training, evaluation of both versions on the
  same held-out frames, promotion through Triton.
"""
