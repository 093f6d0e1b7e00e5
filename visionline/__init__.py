"""visionline: the system around the model."""
