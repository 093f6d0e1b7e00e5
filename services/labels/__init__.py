"""Labels: true labels joined to predictions, accuracy per camera and model version."""
