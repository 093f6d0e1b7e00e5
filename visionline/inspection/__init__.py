"""Inspection at run time: the models' contract (``vision``), one frame's inspection
(``inspector``), tracking and one decision per part (``tracking``), its settings (``config``),
the wire models (``wire``), snapshots, and the frames kept for labelling (``sampling``,
``samples``).

The synthetic line is ``visionline.synthetic``, training and evaluation ``visionline.training``,
and the end-to-end runs ``visionline.acceptance``.
"""
