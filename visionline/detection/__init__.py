"""The ``detect`` pipeline's plain logic: object rules (config) and per-camera tracking state.

No broker and no Triton here: a service feeds ``objects.CameraObjects.update`` one
``DetectFrame`` of detector boxes per frame and publishes the ``ObjectEvent`` list it returns.
"""
