"""Callbacks: sample grids, DDP-exact recognition metrics, checkpoint artifacts, and reliability guards."""

from callbacks.artifacts import CheckpointArtifacts
from callbacks.recognition import RecognitionAccuracy
from callbacks.samples import SampleGrid, grid_image

__all__ = ["CheckpointArtifacts", "RecognitionAccuracy", "SampleGrid", "grid_image"]
