"""The network's layer sizes from the model's settings and the data's: one list [d0, d1, ..., C], or one line
that says which setting to change; and the image shape samples are drawn in."""

from __future__ import annotations

from collections.abc import Sequence

from .errors import ConfigError
from .model import CoupledSigmoidNet


def resolve_sizes(sizes: Sequence[int] | None, hidden_sizes: Sequence[int] | None, input_dim: int | None,
                  num_classes: int | None) -> list[int]:
    """``sizes`` as given (checked against the data's input size and class count), else the data's sizes around
    ``hidden_sizes`` (default 512-512)."""
    if sizes is not None:
        sizes = list(sizes)
        for name, got, want in (("input size", input_dim, sizes[0] if sizes else None),
                                ("class count", num_classes, sizes[-1] if sizes else None)):
            if got is not None and want is not None and got != want:
                raise ConfigError(
                    f"model.sizes {sizes} do not match the data's {name} {got}: "
                    f"drop model.sizes and set model.hidden_sizes instead"
                )
        if hidden_sizes is not None and list(hidden_sizes) != sizes[1:-1]:
            raise ConfigError(f"model.sizes {sizes} and model.hidden_sizes {list(hidden_sizes)} both give the "
                              f"hidden layers: set one (e.g. --model.hidden_sizes null)")
    else:
        if input_dim is None or num_classes is None:
            raise ConfigError(
                "the model needs its input size and class count: set model.sizes, or model.input_dim "
                "and model.num_classes (the CLI links them from the data)"
            )
        hidden = [512, 512] if hidden_sizes is None else list(hidden_sizes)
        sizes = [input_dim, *hidden, num_classes]
    try:
        CoupledSigmoidNet._check_sizes(sizes)
    except ValueError as e:
        raise ConfigError(str(e)) from None
    return sizes


def image_shape(linked: Sequence[int] | None, d0: int) -> tuple[int, int, int]:
    """(C, H, W) of the data, as linked from the DataModule; a model without it (older checkpoints, sizes given by
    hand) is shown as one square grey image, or a single row when d0 is not a square."""
    if linked:
        return tuple(int(s) for s in linked)
    side = int(round(d0**0.5))
    return (1, side, side) if side * side == d0 else (1, 1, d0)
