"""Training, export and evaluation of the three inspection models (their contract is
``visionline/inspection/vision.py``).

``visionline train all`` renders seeded data from the line generator, extracts frozen
EfficientNet-Lite0 features once, fits each model's head on them (minutes on two CPU cores),
exports ONNX graphs that take uint8 images, and writes Triton version folders.
torch is imported only here: workers and the CLI's other commands never load it.
"""
