"""Lightning callbacks, one per file: sample grids, sample quality, the loss
guard, the graceful SIGTERM stop, the prediction writer and the evaluation progress bar."""

from callbacks.samples import SampleGrid, grid_image

__all__ = ["SampleGrid", "grid_image"]
