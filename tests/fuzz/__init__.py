"""The bad-input corpus and the fuzzing of the frame decoders (ingest, preprocess, inspect):
docs/fuzzing.md."""
