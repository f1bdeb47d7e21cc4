"""The pipeline: run operations on a target, answer files, batches, reports and undo."""
