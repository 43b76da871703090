"""Self-consistency: the recognition pass scores ancestral samples of each class against the class they were
generated from. The number is the same on any number of processes (see :func:`score_samples_sharded`)."""

from __future__ import annotations

import torch

from .seeds import stream_generator


@torch.no_grad()
def score_samples_sharded(
    net, per_class: int, rank: int, world: int, device: torch.device, seed: int = 0, chunk: int = 256
) -> tuple[torch.Tensor, torch.Tensor]:
    """This rank's share of ``per_class`` ancestral samples per class, recognised: ``(logits, labels)``.

    The global list of C * per_class samples is cut into fixed chunks; chunk j is drawn with a generator
    seeded by (seed, j) and handled by rank j % world. No sample is drawn twice and every sample is the
    same whatever the number of ranks, so a synced accuracy over them does not depend on it.
    """
    total = net.num_classes * per_class
    logits, labels = [], []
    for j, start in enumerate(range(0, total, chunk)):
        if j % world != rank:
            continue
        ids = torch.arange(start, min(start + chunk, total), device=device)
        y = ids // per_class
        g = stream_generator(seed, "self_consistency", j, device=device)
        logits.append(net.recognize(net.sample_down(y, g)[0]))
        labels.append(y)
    if not logits:
        return torch.empty(0, net.num_classes, device=device), torch.empty(0, dtype=torch.long, device=device)
    return torch.cat(logits), torch.cat(labels)
