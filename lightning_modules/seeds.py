"""The one seed scheme: every random draw the project makes comes from a named stream.

A draw's generator is seeded by (the run's seed, the stream's name, the draw's position: epoch, batch, rank,
chunk ...), hashed by NumPy's SeedSequence so that nearby inputs give unrelated streams. Nothing depends on a
global RNG or on how many draws came before, so a resumed run draws what an uninterrupted one drew, and a draw
is the same on any number of processes. Streams are named here, in one table: a new purpose gets a new name.
"""

from __future__ import annotations

import numpy as np
import torch

#: stream name -> the number mixed into its seeds (part of what a seed means: never renumber one)
STREAMS = {
    "train": 0,                # a stochastic objective's samples in a training step
    "likelihood": 1,           # the test log-likelihood's importance samples
    "val": 3,                  # a stochastic objective's samples in a validation step
    "test": 4,                 # ... in a test step
    "proposal_fit": 6,         # fitting test/log_likelihood_fitted's proposal
    "proposal_likelihood": 7,  # its importance samples
    "self_consistency": 8,     # the ancestral samples scored by the recognition pass
    "shuffle": 9,              # the training set's order in an epoch
    "binarize_static": 10,     # binarize: static, one draw per training image
    "binarize_dynamic": 11,    # binarize: dynamic, a fresh draw per served batch
    "binarize_block": 12,      # ... its CPU fast path, one block of bytes at a time
    "binarize_float": 13,      # ... of float (not uint8) images
    "sample_quality": 14,      # the ancestral samples the reference classifier scores
    "approx_error": 15,        # the Monte Carlo marginals the inference methods are compared with
    "sample_grid": 16,         # the training-time sample grids
    "samples": 17,             # `coupled sample`
    "rbm_pretrain": 18,        # RBM pretraining: its batches, binarizations and Gibbs chains
}


def stream_seed(seed: int, stream: str, *position: int) -> int:
    """A 63-bit seed for the draw at `position` of `stream` in a run seeded by `seed`."""
    if stream not in STREAMS:
        raise KeyError(f"unknown random stream {stream!r}: add it to STREAMS in lightning_modules/seeds.py")
    parts = [int(seed) % 2**64, STREAMS[stream], *(int(p) % 2**64 for p in position)]
    return int(np.random.SeedSequence(parts).generate_state(1, np.uint64)[0] >> np.uint64(1))


def stream_generator(seed: int, stream: str, *position: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A torch generator for that draw, on `device`."""
    return torch.Generator(device=device).manual_seed(stream_seed(seed, stream, *position))
