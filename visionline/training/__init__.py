"""Training, export and evaluation.

The three inspection models (their contract is ``visionline/inspection/vision.py``):
``visionline train all`` renders seeded data from the line generator, extracts frozen
EfficientNet-Lite0 features once, fits each model's head on them (minutes on two CPU cores),
exports ONNX graphs that take uint8 images, and writes Triton version folders.
torch is imported only here: workers and the CLI's other commands never load it.

Classifiers on the user's own datasets (issue 17):
- ``classifier``: frozen ImageNet backbone features, nuisance-augmented copies, the head.
- ``classifier_data``: a dataset version's images prepared, and the held-out split.
- ``classifier_job``: ``visionline train classifier``'s work; the candidate's registry record.
- ``classifier_serving``: the Triton version folder (ONNX, config, labels, split, metadata).
- ``classifier_metrics``: accuracy, macro F1, confusion matrix, thresholds for a precision.
- ``dataset_eval``: held-out figures through ONNX Runtime and the robustness card.
- ``card_chart``: the robustness card as a PNG (training, ``eval --chart``, the API).
- ``nuisance_images``: the project's nuisance factors on RGB photographs.
- ``dataset_cli``: the ``train classifier`` command and ``eval``'s dataset mode.

Detectors (``detector*``) and anomaly models of the user's good items: ``anomaly_job``
(PatchCore on the good images, the threshold, the candidate), ``anomaly_eval`` (AUROC,
false-positive rate and recall at the threshold, the card) and ``anomaly_cli``.
"""
