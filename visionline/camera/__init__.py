"""The camera side: frame sources and simulators (``sources``, ``simulator``), the Kafka
publisher and pacing loop (``publisher``), and the CLI (``cli``, ``python -m visionline.camera``).

Import the submodules directly: this package imports nothing, so the upload service can use
the publisher without loading the simulators.
"""
