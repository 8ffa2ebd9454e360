"""Weights files: torch-file IO, model cards and provenance, encoders of any origin, the released
CromSS checkpoints, and the ``cromss weights`` commands."""
