"""Exact Bernoulli(x / 255) draws for uint8 grey levels, at 8 random bits per pixel.

Why not ``torch.bernoulli`` or ``torch.randint(0, 255)``: on the CPU, torch's generator spends a 32-bit
Mersenne-Twister draw plus a float or range conversion on every pixel, a visible part of a training epoch
(reports/BENCH_NOTES.md, "Numbers that were in docstrings"). Here one 64-bit draw of numpy's SFC64 generator
feeds 8 pixels, and a caller
that binarizes many batches (the DataModule) draws the bytes of several at once, so that the fixed cost of
each tensor op is paid once per block rather than once per batch.

Why it is exact: a random byte ``u`` is uniform on {0..255}; given ``u != 255`` it is uniform on {0..254}, and
``P(u < x | u != 255) = x / 255``. Bytes equal to 255 are rejected and redrawn until none is left (rejection
sampling, see :func:`bytes_below_255`), so every pixel is an exact Bernoulli(x / 255), 0 -> 0 and 255 -> 1.

On an accelerator the generator is fast and a host sync per batch (the rejection's ``nonzero``) is not, so
there ``torch.randint(0, 255)`` draws the bytes directly.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from lightning_modules.seeds import stream_seed

# training batches whose random bytes are drawn together on the CPU (the fixed cost of each tensor op of the draw
# is then paid once per block), fewer where 16 would pass 8 MiB
DRAW_BLOCK = 16
DRAW_BLOCK_BYTES = 2**23


def _random_words(bitgen: np.random.BitGenerator, n: int) -> Tensor:
    return torch.from_numpy(bitgen.random_raw(n).view(np.int64))


def _flags_255(words: Tensor) -> Tensor:
    """int64 per word, nonzero where the word holds a byte equal to 255."""
    b = words.view(torch.uint8)
    # tensor-vs-tensor compare: the uint8-vs-scalar kernel is an order of magnitude slower on the CPU
    return torch.eq(b, torch.full_like(b, 255)).view(torch.int64)


def bytes_below_255(n: int, seed: int, spare: int | None = None) -> Tensor:
    """``n`` i.i.d. uniform bytes on {0..254} on the CPU, a function of ``seed`` alone.

    Rejection at the word level: a 64-bit word holding a 255 (3.1% of them) is rejected whole; conditioning
    8 independent uniform bytes on "none is 255" leaves them independent and uniform on {0..254}. Rejected
    words are replaced by the first acceptable ones among ``spare`` extra words of the same draw (by default
    about twice as many as needed), which are independent of the rest, so the result stays exact; only if
    those run out are the remaining words redrawn in a loop.
    """
    bitgen = np.random.SFC64(seed)
    m = (n + 7) // 8
    spare = m // 16 + 64 if spare is None else spare
    words = _random_words(bitgen, m + spare)
    flags = _flags_255(words)
    bad = flags[:m].nonzero().squeeze(1)
    ok = torch.eq(flags[m:], torch.zeros_like(flags[m:])).nonzero().squeeze(1) + m
    use = min(ok.numel(), bad.numel())
    words[bad[:use]] = words[ok[:use]]
    bad = bad[use:]
    while bad.numel():
        fresh = _random_words(bitgen, bad.numel())
        words[bad] = fresh
        bad = bad[_flags_255(fresh).nonzero().squeeze(1)]
    return words[:m].view(torch.uint8)[:n]


def threshold(u: Tensor, x: Tensor) -> Tensor:
    """float32 ``u < x`` elementwise, of ``x``'s shape (``u``: bytes on {0..254}, ``x``: uint8 grey levels)."""
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    # compare straight into the float buffer: converting a bool result is a slow extra pass on the CPU
    return torch.lt(u.view(x.shape), x, out=out)


def bernoulli_grey(x: Tensor, seed: int) -> Tensor:
    """float32 ``{0, 1}`` of ``x``'s shape and device, each pixel 1 with probability ``x / 255`` (uint8 ``x``);
    a function of ``x`` and ``seed`` (and, off the CPU, of the device's generator)."""
    if x.dtype != torch.uint8:
        raise TypeError(f"bernoulli_grey takes uint8 grey levels, got {x.dtype}")
    if x.device.type == "cpu":
        return threshold(bytes_below_255(x.numel(), seed), x)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    return threshold(torch.randint(0, 255, x.shape, dtype=torch.uint8, device=x.device, generator=gen), x)


def static_draw(x: Tensor, seed: int) -> Tensor:
    """One fixed seeded Bernoulli(x / 255) draw per training pixel, stored as uint8 {0, 255} (the raw loader's
    scale, so the training loader still yields uint8 that the DataModule's transform maps to {0, 1})."""
    out = torch.empty_like(x)
    for start in range(0, x.shape[0], 8192):
        chunk_seed = stream_seed(seed, "binarize_static", start)
        out[start : start + 8192] = bernoulli_grey(x[start : start + 8192], chunk_seed).mul_(255)
    return out


class BatchDraws:
    """Bernoulli(x / 255) of training batches, each a function of (seed, epoch, batch position, rank).

    On the CPU the random bytes of ``DRAW_BLOCK`` consecutive batches (fewer where that would pass
    ``DRAW_BLOCK_BYTES``) are drawn in one call and the block is kept for the batches that follow; a batch takes
    the first ``x.numel()`` bytes of its slot, so a resumed run (which recomputes the block) gets the very same
    draws. Batches wider than a slot (`width` elements), and batches on an accelerator, get a draw of their own.
    """

    def __init__(self, seed: int):
        self.seed = int(seed)
        self._block: tuple[tuple[int, int, int, int], Tensor] | None = None  # (epoch, block, rank, width), bytes

    def __call__(self, x: Tensor, epoch: int, position: int, rank: int, width: int) -> Tensor:
        if x.device.type != "cpu" or x.numel() > width:
            return bernoulli_grey(x, stream_seed(self.seed, "binarize_dynamic", epoch, position, rank))
        per_block = max(1, min(DRAW_BLOCK, DRAW_BLOCK_BYTES // width))
        block, slot = divmod(position, per_block)
        key = (epoch, block, rank, width)
        if self._block is None or self._block[0] != key:
            u = bytes_below_255(per_block * width, stream_seed(self.seed, "binarize_block", epoch, block, rank))
            self._block = (key, u.view(per_block, width))
        return threshold(self._block[1][slot, : x.numel()], x)
