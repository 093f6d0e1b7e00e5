"""The user's own labelled images as datasets: immutable, content-addressed versions.

``visionline datasets import`` reads a folder in one of ``readers.FORMATS`` (``readers``),
checks every image and label (``validate``), puts the files in a ``DatasetStore`` (``store``)
and records the version in PostgreSQL (``registry``); ``exporting`` writes a version back out
in any format its task allows. ``model.Dataset`` is the neutral form between them.
"""
