"""The acceptance harness of the inspection use case, a tool rather than product:
``visionline acceptance run`` sends simulated lines through a real stack and scores the alerts
against the generator's truth (``run``); ``visionline acceptance replay`` runs the same lines
through the models and the tracker in one process, to tune decision rules (``replay``).
"""
