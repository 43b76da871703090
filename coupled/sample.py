"""``coupled sample``: class-conditional samples from a trained model, as a labelled PNG grid and an .npz.

    coupled sample --ckpt_path PATH|wandb:... [--classes 0,3,7] [--per_class N] [--kind binary|means]
                   [--seed S] [--out DIR] [--device cpu|cuda|auto] [--runs_dir DIR]

Row c of the grid is class c: its name, the deterministic mean image (set apart), then N ancestral samples
(``binary``: sampled pixels; ``means``: the pixel means p(x0 = 1 | x1) of the sampled x1). The .npz holds
``images`` (classes * N, C, H, W) in [0, 1], ``labels``, ``means`` (one per class) and ``class_names``. The
image shape and class names come from the checkpoint (kept there since they were linked from the data); a
checkpoint without them is shown as a square grey image with numbered classes.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from callbacks.samples import grid_image
from lightning_modules.errors import ConfigError
from lightning_modules.learner import GenerativeLearner
from lightning_modules.model import SAMPLE_KINDS
from lightning_modules.seeds import stream_generator

from .load import load


def parse_classes(text: str | None, num_classes: int) -> list[int]:
    if text is None or text == "":
        return list(range(num_classes))
    try:
        classes = [int(c) for c in text.split(",")]
    except ValueError:
        raise ConfigError(f"--classes must be comma-separated class ids such as 0,3,7, got {text!r}") from None
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ConfigError(f"--classes {bad[0]} is out of range: this model has classes 0..{num_classes - 1}")
    return classes


@torch.no_grad()
def draw(model: GenerativeLearner, classes: list[int], per_class: int, kind: str, seed: int) -> dict:
    """Means (len(classes), d0) and samples (len(classes), per_class, d0); the same seed gives the same images
    on the same device."""
    net, device = model.net, model.device
    g = stream_generator(seed, "samples", device=device)
    ys = torch.tensor(classes, device=device).repeat_interleave(per_class)
    samples = net.sample_images(ys, kind, g)
    means = net.generate_mean(torch.tensor(classes, device=device))
    return {"means": means.cpu(), "samples": samples.view(len(classes), per_class, -1).cpu(), "labels": ys.cpu()}


def labelled_grid(means, samples, shape, names: list[str], scale: int = 2) -> Image.Image:
    """The sample grid (callbacks.samples.grid_image) with each row's class name in a margin on the left."""

    grid = grid_image(means, samples, shape, scale=scale)
    row_h = (shape[1] + 2) * scale
    margin = 8 + 6 * max(len(n) for n in names)
    white = 255 if grid.mode == "L" else (255, 255, 255)
    canvas = Image.new(grid.mode, (grid.width + margin, grid.height), color=white)
    canvas.paste(grid, (margin, 0))
    pen = ImageDraw.Draw(canvas)
    for r, name in enumerate(names):
        ink = 0 if grid.mode == "L" else (0, 0, 0)
        pen.text((4, 2 * scale + r * row_h + max(0, row_h // 2 - 8)), name, fill=ink)
    return canvas


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line through the CLI's error path, not argparse's usage dump
        raise ConfigError(f"coupled sample: {message} (see coupled sample --help)")


def main(argv: list[str]) -> Path:
    p = _Parser(prog="coupled sample", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt_path", required=True,
                   help="a checkpoint file or wandb:[[ENTITY/]PROJECT/]model-RUNID[:ALIAS]")
    p.add_argument("--classes", default=None, help="comma-separated class ids (default: every class)")
    p.add_argument("--per_class", type=int, default=10, help="samples per class (default 10)")
    p.add_argument("--kind", choices=SAMPLE_KINDS, default="binary")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("samples"), help="output folder (default ./samples)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (a GPU where there is one)")
    p.add_argument("--runs_dir", default="runs", help="where the local copies of wandb: artifacts live (offline)")
    args = p.parse_args(argv)
    if args.per_class < 1:
        raise ConfigError(f"--per_class must be a positive number of samples, got {args.per_class}")
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {device}: this machine has no CUDA device; use --device cpu")
    model = load(args.ckpt_path, runs_dir=args.runs_dir, map_location=device)
    C = model.net.num_classes
    classes = parse_classes(args.classes, C)
    names = list(model.hparams.get("class_names") or [str(c) for c in range(C)])
    shape = model.image_shape
    out = draw(model, classes, args.per_class, args.kind, args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"samples_{args.kind}_seed{args.seed}"
    img = labelled_grid(out["means"], out["samples"], shape, [names[c] for c in classes])
    img.save(stem.with_suffix(".png"))
    np.savez(stem.with_suffix(".npz"), images=out["samples"].reshape(-1, *shape).numpy(),
             labels=out["labels"].numpy(), means=out["means"].reshape(-1, *shape).numpy(),
             class_names=np.array([names[c] for c in classes]))
    print(f"coupled sample: wrote {stem.with_suffix('.png')} and {stem.with_suffix('.npz')} "
          f"({len(classes)} classes x {args.per_class}, {args.kind})")
    return stem
