"""``coupled reference --config configs/reference_cnn.yaml --out PATH``: train the reference classifier.

The reference CNN (:class:`lightning_modules.reference.ReferenceCNN`) scores generated samples (sample accuracy,
``--sample_quality.classifier_ckpt``); it is trained discriminatively on the training split, tested, and saved
with its weights only, here through a plain LightningCLI over the same DataModules as ``coupled fit``.
``PATH.json`` records its test accuracy and the command that made it.
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path
from typing import Any

from pytorch_lightning.cli import LightningArgumentParser, LightningCLI

from datamodules import HFImageDataModule
from lightning_modules.files import atomic_write_text
from lightning_modules.reference import ReferenceCNN

from .arguments import CoupledArgumentParser
from .trainer import CHECKPOINT_IO


class ReferenceCLI(LightningCLI):
    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_argument("--out", type=str, required=True, help="where to write the trained checkpoint (.ckpt)")
        parser.set_defaults({"data": {"class_path": "datamodules.MNISTDataModule"}})
        parser.link_arguments("data.image_shape", "model.image_shape", apply_on="instantiate")
        parser.link_arguments("data.num_classes", "model.num_classes", apply_on="instantiate")


def main(argv: list[str]) -> dict[str, Any]:
    """Fit, test and save; returns ``{"ckpt", "test_acc", "command"}`` (also written to ``<out>.json``)."""
    cli = ReferenceCLI(
        ReferenceCNN, HFImageDataModule, subclass_mode_data=True, run=False, args=argv,
        parser_class=CoupledArgumentParser, parser_kwargs={"prog": "coupled reference"},
        save_config_callback=None, seed_everything_default=0,
        trainer_defaults={"logger": False, "enable_checkpointing": False, "enable_model_summary": False,
                          "plugins": [dict(CHECKPOINT_IO)]},
    )
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    test = cli.trainer.test(cli.model, datamodule=cli.datamodule, verbose=False)[0]
    out = Path(cli.config["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    cli.trainer.save_checkpoint(out, weights_only=True)
    meta = {"ckpt": str(out), "test_acc": float(test["test/acc"]),
            "command": "coupled reference " + shlex.join(argv)}
    atomic_write_text(out.with_name(out.name + ".json"), json.dumps(meta, indent=1))
    print(f"coupled reference: test accuracy {meta['test_acc']:.4f}; wrote {out}", flush=True)
    return meta


def refresh(meta: dict[str, Any]) -> dict[str, Any]:
    """``meta`` (a copy of a reference's record) as its checkpoint's own ``<ckpt>.json`` reads now: a later
    ``coupled reference --out`` to the same path replaces the classifier, and a copy kept elsewhere would go on
    naming the old one. The records it replaced stay, oldest first, under ``replaced``."""
    side = Path(str(meta["ckpt"]) + ".json")
    if not side.is_file():
        return meta
    now = json.loads(side.read_text())
    if now["test_acc"] == meta["test_acc"]:  # the same classifier (an older copy may name another command)
        return meta
    old = {"test_acc": meta["test_acc"], "command": meta["command"]}
    return {**meta, "test_acc": now["test_acc"], "command": now["command"],
            "replaced": [*meta.get("replaced", []), old]}
