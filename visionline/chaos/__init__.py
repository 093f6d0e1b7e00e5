"""Fault injection on the local stack (issue 18): ``faults`` says what is killed and how
recovery is awaited, ``run`` drives a run, ``check`` counts what was lost or doubled, ``cli``
is ``visionline chaos``."""
