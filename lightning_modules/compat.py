"""Whether a checkpoint's weights fit a model: one line that names the layer sizes or the tying, not a
`load_state_dict` dump of tensor names."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

import torch

from .errors import CheckpointError


def _sizes_from_state_dict(sd: Mapping[str, torch.Tensor], prefix: str = "net.") -> list[int] | None:
    """[d0, d1, ..., C] of a CoupledSigmoidNet from its W_k shapes (d_k, d_(k-1)), if it has them."""
    ws = []
    k = 0
    while f"{prefix}W.{k}" in sd:
        ws.append(sd[f"{prefix}W.{k}"])
        k += 1
    if not ws or any(w.ndim != 2 for w in ws):
        return None
    return [int(ws[0].shape[1])] + [int(w.shape[0]) for w in ws]


def check_compatible(
    checkpoint: Mapping[str, Any], model: torch.nn.Module, path: str | os.PathLike | None = None
) -> None:
    """Raise a one-line :class:`CheckpointError` when `checkpoint`'s weights cannot load into `model`.

    Compares parameter names and shapes (buffers too); for the coupled net it reports the layer sizes
    and the tied/untied setting rather than raw tensor names. Call it from
    ``LightningModule.on_load_checkpoint`` so that a resume fails before Lightning's multi-line
    ``load_state_dict`` error.
    """
    where = f"checkpoint {path}" if path is not None else "the checkpoint"
    sd = checkpoint.get("state_dict") if isinstance(checkpoint, Mapping) else None
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{where} has no 'state_dict': it is not a Lightning checkpoint")
    own = model.state_dict()
    strict = getattr(model, "strict_loading", True)

    ck_sizes, own_sizes = _sizes_from_state_dict(sd), _sizes_from_state_dict(own)
    if ck_sizes is not None and own_sizes is not None and ck_sizes != own_sizes:
        raise CheckpointError(f"{where} was trained with sizes {ck_sizes} but the model has {own_sizes}")

    ck_tied = not any(k.startswith("net.V.") for k in sd)
    own_tied = not any(k.startswith("net.V.") for k in own)
    if ck_sizes is not None and own_sizes is not None and ck_tied != own_tied:
        raise CheckpointError(f"{where} was trained with tied={ck_tied} but the model has tied={own_tied}")

    mismatched = [
        f"{k} {tuple(sd[k].shape)} vs {tuple(v.shape)}"
        for k, v in own.items()
        if k in sd and isinstance(sd[k], torch.Tensor) and tuple(sd[k].shape) != tuple(v.shape)
    ]
    if mismatched:
        raise CheckpointError(
            f"{where} does not fit the model: shape (checkpoint vs model) differs for "
            f"{', '.join(mismatched[:3])}{' ...' if len(mismatched) > 3 else ''}"
        )
    if strict:
        missing = sorted(set(own) - set(sd))
        unexpected = sorted(set(sd) - set(own))
        if missing or unexpected:
            parts = []
            if missing:
                parts.append(f"it lacks {', '.join(missing[:3])}{' ...' if len(missing) > 3 else ''}")
            if unexpected:
                parts.append(
                    f"it has {', '.join(unexpected[:3])}{' ...' if len(unexpected) > 3 else ''} "
                    f"that the model does not"
                )
            raise CheckpointError(f"{where} is for a different architecture: {'; '.join(parts)}")
