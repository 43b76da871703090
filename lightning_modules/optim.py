"""The optimizers a GenerativeLearner can use, with fused kernels where the device and dtype have them."""

from __future__ import annotations

import torch

FUSED_DEVICES = ("cpu", "cuda")
FUSED_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def make_optimizer(params, name: str = "adam", lr: float = 1e-3, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The training optimizer: Adam, AdamW or SGD with momentum 0.9.

    torch's fused kernels are used where every parameter allows them (float on the CPU or a CUDA device): one
    kernel per step instead of several per parameter. On the CPU the default per-parameter Adam cost a sixth
    of a training epoch of the paper's model; fused it is about 6x cheaper (``reports/BENCH.md``).
    """
    params = list(params)
    fused = bool(params) and all(p.device.type in FUSED_DEVICES and p.dtype in FUSED_DTYPES for p in params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=weight_decay, fused=fused or None)
    cls = torch.optim.AdamW if name == "adamw" else torch.optim.Adam
    return cls(params, lr=lr, weight_decay=weight_decay, fused=fused or None)
