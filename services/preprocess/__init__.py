"""Preprocess: decode, measure image quality, resize to the model's input as a uint8 tensor."""
