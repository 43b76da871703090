"""datamodules.binarize: exact Bernoulli(x / 255) from 8 random bits per pixel."""

import pytest
import torch

from datamodules.binarize import bernoulli_grey, bytes_below_255


@pytest.mark.parametrize("spare", [None, 0, 100])  # default spares; none (all redrawn); too few (both paths)
def test_bytes_are_uniform_below_255_in_every_lane(spare):
    u = bytes_below_255(8 * 200_000, seed=0, spare=spare)  # 200,000 words: about 6,200 of them rejected
    assert u.dtype == torch.uint8 and u.shape == (8 * 200_000,)
    assert torch.equal(u, bytes_below_255(8 * 200_000, seed=0, spare=spare))  # a function of the seed
    u = u.view(-1, 8).long()
    assert int(u.max()) == 254 and int(u.min()) == 0
    # chi-square per byte lane of a word (a biased lane, e.g. a sign bit left at 0, fails by far)
    expected = u.shape[0] / 255
    for lane in range(8):
        counts = torch.bincount(u[:, lane], minlength=255).double()
        chi2 = float(((counts - expected) ** 2 / expected).sum())
        assert chi2 < 254 + 6 * (2 * 254) ** 0.5, (lane, chi2)  # dof 254, 6 sd


def test_pixel_is_one_with_probability_grey_over_255():
    levels = torch.arange(256, dtype=torch.uint8)
    x = levels.repeat(512, 1)  # every grey level, 512 pixels a draw
    n_draws = 400
    ones = torch.zeros(256, dtype=torch.float64)
    for seed in range(n_draws):
        ones += bernoulli_grey(x, seed).sum(0, dtype=torch.float64)
    n = 512 * n_draws
    p_hat = ones / n
    p = levels.double() / 255
    assert p_hat[0] == 0 and p_hat[255] == 1  # deterministic ends
    z = (p_hat[1:255] - p[1:255]) / (p[1:255] * (1 - p[1:255]) / n).sqrt()
    assert z.abs().max() < 5.0, z.abs().max()
    # x / 256 (plain bytes, no rejection) would be off by 15 sd at level 254
    assert (p_hat[254] - 254 / 256) / (p[254] * (1 - p[254]) / n) ** 0.5 > 8


def test_seeded_shapes_and_types():
    x = torch.randint(0, 256, (3, 7, 5), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    a = bernoulli_grey(x, 5)
    b = bernoulli_grey(x, 5)
    c = bernoulli_grey(x, 6)
    assert a.dtype == torch.float32 and a.shape == x.shape
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert set(a.unique().tolist()) <= {0.0, 1.0}
    t = x.transpose(0, 2)  # non-contiguous input
    from_view = bernoulli_grey(t, 5)
    assert from_view.shape == t.shape
    assert torch.equal(from_view, bernoulli_grey(t.contiguous(), 5))
    with pytest.raises(TypeError, match="uint8"):
        bernoulli_grey(x.float(), 5)
