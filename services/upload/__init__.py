"""HTTP upload of frames for cameras that cannot speak Kafka: ``python -m services.upload``."""
