"""Reproduce the paper's experiment and its ablations: `make reproduce` (QUICK=1 for a smoke run).

Trains and evaluates, on MNIST and Fashion-MNIST, every objective tied and untied (3 seeds for the MNIST
tied rows, 1 elsewhere), plus a reference CNN per dataset that scores generated samples. Each row is
written to <out>/runs/<row>.json as soon as it finishes, and finished rows are skipped, so an interrupted
run resumes row by row. Then <out>/results.json and <out>/RESULTS.md are generated from those files.

    python scripts/reproduce.py                      # the whole matrix
    python scripts/reproduce.py --only mnist-symmetric-tied   # rows whose key contains this
    python scripts/reproduce.py --quick              # smoke version (minutes), writes reports/quick/
    python scripts/reproduce.py --variants           # the matrix, then the recipe variants (VARIANTS)
    python scripts/reproduce.py --report-only        # regenerate results.json / RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
import yaml  # noqa: E402
from frontier_report import write_frontier_report  # noqa: E402
from report import MATRIX_OBJECTIVES as OBJECTIVES  # noqa: E402  (scripts/report.py: tables, curves, reading)
from report import write_report  # noqa: E402

from callbacks.sample_quality import SampleQuality  # noqa: E402
from callbacks.samples import SampleGrid  # noqa: E402
from datamodules import FashionMNISTDataModule, MNISTDataModule  # noqa: E402
from lightning_modules import GenerativeLearner  # noqa: E402
from lightning_modules.reference import ReferenceCNN  # noqa: E402

DATASETS = {"mnist": MNISTDataModule, "fashion_mnist": FashionMNISTDataModule}

# The recipe: one architecture for every row; objective options where the objective has them.
RECIPE = {
    "hidden_sizes": [512, 512],
    "lr": 1e-3,
    "lr_schedule": "cosine",
    "batch_size": 128,
    "epochs": 20,
    # the paper weighs both terms 1; 0.1 keeps the generation term's optimum (same -log p(x|y) on
    # validation) and lifts recognition (see reports/NOTES.md); the row `*-symmetric_w1-*` runs weight 1
    "objective_kwargs": {"symmetric": {"generation_weight": 0.1}},
}
QUICK = {"train_size": 5000, "epochs": 1, "eval_num_samples": 50, "test_images": 1000, "per_class": 100,
         "marginal_images": 100, "mc_samples": 200, "reference_epochs": 1}
FULL = {"train_size": None, "epochs": RECIPE["epochs"], "eval_num_samples": 1000, "test_images": None,
        "per_class": 1000, "marginal_images": 500, "mc_samples": 1000, "reference_epochs": None}


# Recipe variants (MNIST, tied), each changing one thing of the recipe (the last one two) to see what moves the
# targets: (variant, objective, overrides, what changed, seeds). Not part of the matrix; run after it in this
# order, skipped by --quick.
VARIANTS = [
    ("w1", "symmetric", {"objective_kwargs": {"generation_weight": 1.0}}, "the paper's generation weight 1", (0,)),
    ("w003", "symmetric", {"objective_kwargs": {"generation_weight": 0.03}}, "generation weight 0.03", (0,)),
    ("mv", "symmetric", {"objective_kwargs": {"generation_weight": 0.1, "method": "mean_variance"}},
     "mean-variance propagation in training", (0,)),
    ("", "hybrid", {"objective_kwargs": {"generation_weight": 0.1, "sleep_weight": 1.0}},
     "mixed objective: symmetric + wake-sleep in one loss", (0,)),
    ("e60", "symmetric", {"epochs": 60}, "60 epochs instead of 20", (0,)),
    ("e60", "wake_sleep", {"epochs": 60}, "60 epochs instead of 20", (0,)),
    ("wide", "symmetric", {"hidden_sizes": [1024, 1024]}, "hidden layers 1024-1024 instead of 512-512", (0,)),
    # the 60-epoch recipe met the accuracy target at seed 0: its other seeds, and the baseline at 60 epochs
    ("e60", "symmetric", {"epochs": 60}, "60 epochs instead of 20", (1, 2)),
    ("e60", "discriminative", {"epochs": 60}, "60 epochs instead of 20", (0,)),
    ("const", "symmetric", {"lr_schedule": None}, "constant learning rate instead of the cosine schedule", (0,)),
    ("const_e60", "symmetric", {"lr_schedule": None, "epochs": 60}, "constant learning rate and 60 epochs", (0,)),
]


# The frontier study (MNIST): accuracy against likelihood for tied and untied pairs, every generative objective
# at four generative weights w (rws and vimco at two K). w scales all of an objective's generative terms
# against -log q(y|x): symmetric's -log p(x|y); wake_sleep's wake and sleep; rws's p- and q-terms; vimco's
# bound. A shorter budget than the matrix (48 runs of 4 epochs), and the likelihoods at K = 100 on 2,000 test
# images, the fitted one after 500 proposal steps from the pair's own recognition network; written to
# reports/frontier/ (`make reproduce FRONTIER=1`).
FRONTIER_OBJECTIVES = ("symmetric", "wake_sleep", "rws", "vimco")
FRONTIER_WEIGHTS = (0.03, 0.1, 0.3, 1.0)
FRONTIER_K = (2, 5)
FRONTIER = {**FULL, "epochs": 4, "eval_num_samples": 100, "test_images": 2000, "per_class": 1000,
            "marginal_images": 100, "mc_samples": 200, "fitted_steps": 500}
QUICK_FRONTIER = {**QUICK, "fitted_steps": 20}


def frontier_rows(quick: bool = False) -> list[dict]:
    """The frontier's runs, tied first; with ``quick`` one weight and one K each (a smoke run)."""
    weights, ks = (FRONTIER_WEIGHTS[-1:], FRONTIER_K[-1:]) if quick else (FRONTIER_WEIGHTS, FRONTIER_K)
    out = []
    for tied in (True, False):
        for objective in FRONTIER_OBJECTIVES:
            for K in ks if objective in ("rws", "vimco") else (None,):
                for w in weights:
                    kwargs = {"generation_weight": w}
                    if objective == "rws":
                        kwargs["q_weight"] = w
                    if K is not None:
                        kwargs["num_samples"] = K
                    variant = f"frontier_w{w:g}" + (f"_K{K}" if K is not None else "")
                    out.append(_row("mnist", objective, tied, 0, variant=variant, objective_kwargs=kwargs,
                                    change=f"generative weight {w:g}" + (f", K = {K}" if K else "")))
    return out


def rows(quick: bool, variants: bool = False) -> list[dict]:
    """The matrix, in the order it runs, most informative first (an interrupted run leaves the rows that
    matter most): MNIST at seed 0, Fashion-MNIST tied then untied, the extra MNIST-tied seeds; then, with
    ``variants``, the recipe variants (not with ``quick``)."""
    out = [_row("mnist", o, t, 0) for o in OBJECTIVES for t in (True, False)]
    out += [_row("fashion_mnist", o, t, 0) for t in (True, False) for o in OBJECTIVES]
    if not quick:
        out += [_row("mnist", o, True, seed) for seed in (1, 2) for o in OBJECTIVES]
    if variants and not quick:
        out += [_row("mnist", o, True, seed, variant=v, change=c, **kw)
                for v, o, kw, c, seeds in VARIANTS for seed in seeds]
    return out


def _row(dataset, objective, tied, seed, variant="", objective_kwargs=None, change="", **overrides) -> dict:
    """One run; ``overrides`` (``hidden_sizes``, ``epochs``, ``lr_schedule``) replace the recipe's for a variant."""
    name = f"{objective}_{variant}" if variant else objective
    return {"key": f"{dataset}-{name}-{'tied' if tied else 'untied'}-s{seed}", "dataset": dataset,
            "objective": objective, "tied": tied, "seed": seed, "variant": variant, "change": change,
            "objective_kwargs": objective_kwargs if objective_kwargs is not None
            else RECIPE["objective_kwargs"].get(objective, {}), **overrides}


def data_dir_for(args, dataset: str) -> str | None:
    if args.data_dir is None:
        return None
    d = Path(args.data_dir) / dataset
    return str(d) if d.is_dir() else None


def datamodule(args, dataset: str, settings: dict, **kw):
    return DATASETS[dataset](data_dir=data_dir_for(args, dataset), batch_size=RECIPE["batch_size"],
                             train_size=settings["train_size"], **kw)


def trainer(max_epochs: int, callbacks=(), limit_test_batches=None) -> pl.Trainer:
    return pl.Trainer(max_epochs=max_epochs, accelerator="auto", devices=1, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      callbacks=list(callbacks), limit_test_batches=limit_test_batches or 1.0)


class EpochRecorder(pl.Callback):
    """Per-epoch validation accuracy and every logged loss part, and the training time per epoch."""

    def __init__(self):
        self.curves: dict[str, list[float]] = {}
        self.epoch_seconds: list[float] = []
        self._t0 = 0.0

    def on_train_epoch_start(self, trainer, pl_module):
        self._t0 = time.perf_counter()

    def on_train_epoch_end(self, trainer, pl_module):
        self.epoch_seconds.append(time.perf_counter() - self._t0)

    def on_validation_epoch_end(self, trainer, pl_module):
        if trainer.sanity_checking:
            return
        for name, value in trainer.callback_metrics.items():
            if name.startswith("val/") or (name.startswith("train/") and name.endswith("_epoch")):
                self.curves.setdefault(name, []).append(float(value))


def test_batches(settings: dict, dm) -> int | None:
    if settings["test_images"] is None:
        return None
    return max(1, settings["test_images"] // dm.test_batch_size)


def train_reference(args, dataset: str, settings: dict, out: Path) -> dict:
    """Train (or reuse) the dataset's reference CNN; returns {"ckpt", "test_acc", "command"}."""
    meta_path = out / "runs" / f"reference-{dataset}.json"
    if meta_path.exists() and Path(json.loads(meta_path.read_text())["ckpt"]).exists():
        return json.loads(meta_path.read_text())
    cfg = yaml.safe_load((ROOT / "configs" / "reference_cnn.yaml").read_text())
    pl.seed_everything(cfg["seed_everything"], workers=True)
    dm = datamodule(args, dataset, settings, binarize=cfg["data"]["binarize"])
    model = ReferenceCNN(image_shape=dm.image_shape, num_classes=dm.num_classes, **cfg["model"])
    t = trainer(settings["reference_epochs"] or cfg["trainer"]["max_epochs"])
    t.fit(model, datamodule=dm)
    test = t.test(model, datamodule=dm, verbose=False)[0]
    ckpt = args.ckpt_dir / f"reference-{dataset}{'-quick' if args.quick else ''}.ckpt"
    ckpt.parent.mkdir(parents=True, exist_ok=True)
    t.save_checkpoint(ckpt, weights_only=True)
    meta = {"ckpt": str(ckpt), "test_acc": test["test/acc"], "command": command(args, f"reference-{dataset}")}
    write_json(meta_path, meta)
    return meta


def run_row(args, row: dict, settings: dict, reference: dict, out: Path) -> dict:
    pl.seed_everything(row["seed"], workers=True)
    dm = datamodule(args, row["dataset"], settings, seed=row["seed"])
    hidden_sizes, epochs = row.get("hidden_sizes", RECIPE["hidden_sizes"]), row.get("epochs", settings["epochs"])
    lr_schedule = row.get("lr_schedule", RECIPE["lr_schedule"])
    model = GenerativeLearner(
        hidden_sizes=hidden_sizes, input_dim=dm.input_dim, num_classes=dm.num_classes,
        objective=row["objective"], tied=row["tied"], lr=RECIPE["lr"], lr_schedule=lr_schedule,
        objective_kwargs=row["objective_kwargs"],
        eval_num_samples=settings["eval_num_samples"], self_consistency_per_class=settings["per_class"],
        fitted_proposal_steps=settings.get("fitted_steps", 0),
    )
    recorder = EpochRecorder()
    quality = SampleQuality(reference["ckpt"], per_class=settings["per_class"],
                            marginal_images=settings["marginal_images"], mc_samples=settings["mc_samples"])
    grid = SampleGrid(samples_per_class=10, every_n_epochs=0, dirpath=str(out / "samples"))
    t = trainer(epochs, [recorder, quality], limit_test_batches=test_batches(settings, dm))
    t.fit(model, datamodule=dm)
    test = t.test(model, datamodule=dm, verbose=False)[0]
    grid.write(t, model, row["key"])
    approx = {m: [quality.results[k] for k in sorted(quality.results) if k.startswith(f"approx_error/{m}/")]
              for m in ("deterministic", "mean_variance")}
    return {
        "key": row["key"], "dataset": row["dataset"], "objective": row["objective"], "tied": row["tied"],
        "variant": row["variant"], "change": row["change"],
        "seed": row["seed"], "epochs": epochs,
        "test_acc": test["test/acc"], "elbo": test["test/elbo"], "log_likelihood": test["test/log_likelihood"],
        "log_likelihood_fitted": test.get("test/log_likelihood_fitted"),
        "sample_acc_means": quality.results.get("sample_acc_means"),
        "log_likelihood_K": settings["eval_num_samples"],
        "self_consistency": test["test/self_consistency"],
        "sample_acc": quality.results.get("sample_acc"), "diversity": quality.results["diversity"],
        "approx_error": approx,
        "seconds_per_epoch": statistics.median(recorder.epoch_seconds),
        "curves": recorder.curves,
        "samples_png": f"samples/{row['key']}.png",
        "recipe": {**{k: v for k, v in RECIPE.items() if k != "objective_kwargs"},
                   "hidden_sizes": hidden_sizes, "epochs": epochs, "lr_schedule": lr_schedule,
                   "objective_kwargs": row["objective_kwargs"],
                   "train_size": settings["train_size"], "test_images": settings["test_images"]},
        "command": command(args, row["key"]),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
    }


def command(args, key: str) -> str:
    flags = (" --quick" if args.quick else "") + (" --frontier" if args.frontier else "")
    return f"python scripts/reproduce.py{flags} --only {key}"


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=1))
    os.replace(tmp, path)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="smoke version: 5,000 images, 1 epoch, small K")
    p.add_argument("--only", default="", help="run only rows whose key contains this (e.g. mnist-symmetric)")
    p.add_argument("--data-dir", default=os.environ.get("DATA_DIR") or _default_data_dir(),
                   help="folder with mnist/ and fashion_mnist/ parquet mirrors (default: ../shared/data)")
    p.add_argument("--out", type=Path, default=None, help="report folder (default reports/, quick: reports/quick/)")
    p.add_argument("--ckpt-dir", type=Path, default=ROOT / ".cache" / "reproduce")
    p.add_argument("--report-only", action="store_true", help="only regenerate results.json and RESULTS.md")
    p.add_argument("--variants", action="store_true",
                   help="also the recipe variants after the matrix (VARIANTS in this file; about 75 more minutes)")
    p.add_argument("--frontier", action="store_true",
                   help="the frontier study instead of the matrix (FRONTIER_* in this file), into reports/frontier/")
    args = p.parse_args(argv)
    args.frontier = args.frontier or os.environ.get("FRONTIER", "") not in ("", "0")  # `make reproduce FRONTIER=1`
    if args.frontier:
        return run_frontier(args)
    args.quick = args.quick or os.environ.get("QUICK", "") not in ("", "0")  # `make reproduce QUICK=1`
    args.variants = args.variants or os.environ.get("VARIANTS", "") not in ("", "0")  # `make reproduce VARIANTS=1`
    out = args.out or (ROOT / "reports" / ("quick" if args.quick else ""))
    settings = QUICK if args.quick else FULL
    if not args.report_only:
        refs = {}
        for dataset in DATASETS:  # `--only reference-<dataset>`: just the reference classifier
            if args.only == f"reference-{dataset}":
                refs[dataset] = train_reference(args, dataset, settings, out)
        for row in rows(args.quick, args.variants or bool(args.only)):  # --only picks among the variants too
            if args.only and args.only not in row["key"]:
                continue
            path = out / "runs" / f"{row['key']}.json"
            if path.exists():
                print(f"[reproduce] {row['key']}: done, skipped")
                continue
            if row["dataset"] not in refs:
                refs[row["dataset"]] = train_reference(args, row["dataset"], settings, out)
            t0 = time.perf_counter()
            result = run_row(args, row, settings, refs[row["dataset"]], out)
            result["wall_seconds"] = time.perf_counter() - t0
            write_json(path, result)
            print(f"[reproduce] {row['key']}: test_acc {result['test_acc']:.4f}, log_likelihood "
                  f"{result['log_likelihood']:.2f}, {result['wall_seconds']:.0f} s", flush=True)
    write_report(out, expected=[r["key"] for r in rows(args.quick, args.variants)])


def run_frontier(args) -> None:
    out = args.out or (ROOT / "reports" / ("quick_frontier" if args.quick else "frontier"))
    settings = QUICK_FRONTIER if args.quick else FRONTIER
    todo = [r for r in frontier_rows(args.quick) if not args.only or args.only in r["key"]]
    if not args.report_only:
        ref = train_reference(args, "mnist", QUICK if args.quick else FULL, out) if todo else None
        for row in todo:
            path = out / "runs" / f"{row['key']}.json"
            if path.exists():
                print(f"[frontier] {row['key']}: done, skipped")
                continue
            t0 = time.perf_counter()
            result = run_row(args, row, settings, ref, out)
            result["wall_seconds"] = time.perf_counter() - t0
            write_json(path, result)
            print(f"[frontier] {row['key']}: test_acc {result['test_acc']:.4f}, log_likelihood "
                  f"{result['log_likelihood']:.2f} (fitted {result['log_likelihood_fitted']:.2f}), "
                  f"{result['wall_seconds']:.0f} s", flush=True)
    write_frontier_report(out, expected=[r["key"] for r in frontier_rows(args.quick)])


def _default_data_dir() -> str | None:
    d = ROOT.parent / "shared" / "data"
    return str(d) if d.is_dir() else None


if __name__ == "__main__":
    main()
