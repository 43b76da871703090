"""One row of a study (`make reproduce`, its frontier): a ``coupled fit`` run as its own process with the row's
configs and overrides, resumed from its run folder's last checkpoint, and its record read back from the folder's
metrics.json; the reference CNN that scores samples; and a finished run made by hand adopted as a row."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from coupled.reference import refresh as refresh_reference
from lightning_modules.files import atomic_write_text
from scripts.run_config import config_differences

ROOT = Path(__file__).resolve().parents[1]
DATA_CLASS = {"mnist": "datamodules.MNISTDataModule", "fashion_mnist": "datamodules.FashionMNISTDataModule"}
# every row is `coupled fit --config BASE_CONFIG[dataset] [--config OVERLAY[objective]] [--config untied] + overrides`
BASE_CONFIG = {"mnist": "configs/symmetric.yaml", "fashion_mnist": "configs/fashion_mnist.yaml"}
OVERLAY = {"symmetric": None, "discriminative": "configs/discriminative.yaml", "wake_sleep": "configs/wake_sleep.yaml",
           "hybrid": "configs/hybrid.yaml", "rws": "configs/rws.yaml", "vimco": "configs/vimco.yaml"}
TEST_BATCH_SIZE = 128  # the DataModules' default test batch size: --trainer.limit_test_batches counts these

# The recipe: one architecture for every row; objective options where the objective has them.
RECIPE = {
    "hidden_sizes": [512, 512], "lr": 1e-3, "lr_schedule": "cosine", "batch_size": 128, "epochs": 20,
    # the paper weighs both terms 1; 0.1 keeps the generation term's optimum (same -log p(x|y) on
    # validation) and lifts recognition (see reports/NOTES.md); the row `*-symmetric_w1-*` runs weight 1
    "objective_kwargs": {"symmetric": {"generation_weight": 0.1}},
}
QUICK = {"train_size": 5000, "epochs": 1, "eval_num_samples": 50, "test_images": 1000, "per_class": 100,
         "marginal_images": 100, "mc_samples": 200, "reference_epochs": 1}
FULL = {"train_size": None, "epochs": RECIPE["epochs"], "eval_num_samples": 1000, "test_images": None,
        "per_class": 1000, "marginal_images": 500, "mc_samples": 1000, "reference_epochs": None}


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


def _flag(value) -> str:  # a YAML value on the command line
    return "null" if value is None else str(value)


def run_id(key: str) -> str:
    """The row's run id (and run folder name): its key, in the characters a W&B run id allows."""
    return key.replace(".", "p")


def fit_args(args, row: dict, settings: dict, reference: dict | None) -> list[str]:
    """The ``coupled fit`` command line of a row: its config files, then the overrides the row records."""
    evaluation = ["--model.eval_num_samples", str(settings["eval_num_samples"]),
                  "--model.self_consistency_per_class", str(settings["per_class"])]
    if row.get("config"):  # a row that is a config as it is (make train's): in full, as its config says
        seed = str(row["seed"])
        cli = ["fit", "--config", row["config"], "--seed_everything", seed, "--data.seed", seed, "--model.seed", seed]
        if settings is not FULL:  # the smoke run shortens it too
            cli += ["--trainer.max_epochs", str(settings["epochs"]), "--model.fitted_proposal_steps", "20",
                    *evaluation]
    else:
        cli = ["fit", "--config", BASE_CONFIG[row["dataset"]]] + (["--config", OVERLAY[row["objective"]]]
                                                                  if OVERLAY[row["objective"]] else [])
        if not row["tied"]:
            cli += ["--config", "configs/untied.yaml"]
        seed = str(row["seed"])  # the model's and the data's own seeds too: Lightning refuses two values of `seed`
        cli += ["--seed_everything", seed, "--data.seed", seed, "--model.seed", seed,
                "--trainer.max_epochs", str(row.get("epochs", settings["epochs"])),
                "--model.lr_schedule", _flag(row.get("lr_schedule", RECIPE["lr_schedule"])),
                "--model.hidden_sizes", json.dumps(row.get("hidden_sizes", RECIPE["hidden_sizes"]))]
        if row["objective_kwargs"]:
            cli += ["--model.objective_kwargs", json.dumps(row["objective_kwargs"])]
        cli += [*evaluation, "--model.fitted_proposal_steps", str(settings.get("fitted_steps", 0))]
    cli += ["--sample_quality.per_class", str(settings["per_class"]),
            "--sample_quality.marginal_images", str(settings["marginal_images"]),
            "--sample_quality.mc_samples", str(settings["mc_samples"])]
    if reference:
        cli += ["--sample_quality.classifier_ckpt", reference["ckpt"]]
    if settings["test_images"]:
        cli += ["--trainer.limit_test_batches", str(max(1, settings["test_images"] // TEST_BATCH_SIZE))]
    if settings["train_size"]:
        cli += ["--data.train_size", str(settings["train_size"])]
    if data_dir_for(args, row["dataset"]):
        cli += ["--data.data_dir", data_dir_for(args, row["dataset"])]
    return cli + ["--runs_dir", str(args.runs_dir), "--trainer.enable_progress_bar", "false",
                  *getattr(args, "fit_flags", [])]


def coupled(cli: list[str], env_extra: dict | None = None) -> None:
    """Run ``python -m coupled CLI`` from the repository root; a failed run stops the study with its output."""
    env = {**os.environ, **(env_extra or {})}
    proc = subprocess.run([sys.executable, "-m", "coupled", *cli], cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise SystemExit(f"[reproduce] failed ({proc.returncode}): coupled {shlex.join(cli)}")


def train_reference(args, dataset: str, settings: dict, out: Path) -> dict:
    """Train (or reuse) the dataset's reference CNN with ``coupled reference``; {"ckpt", "test_acc", "command"}."""
    meta_path = out / "runs" / f"reference-{dataset}.json"
    kept = json.loads(meta_path.read_text()) if meta_path.exists() else None
    if kept and Path(kept["ckpt"]).exists():
        meta = refresh_reference(kept)  # retrained by hand since?
        if meta is not kept:
            write_json(meta_path, meta)
        return meta
    ckpt = args.ckpt_dir / f"reference-{dataset}{'-quick' if args.quick else ''}.ckpt"
    cli = ["reference", "--config", "configs/reference_cnn.yaml", "--data.class_path", DATA_CLASS[dataset],
           "--out", str(ckpt)]
    if settings["reference_epochs"]:
        cli += ["--trainer.max_epochs", str(settings["reference_epochs"])]
    if settings["train_size"]:
        cli += ["--data.train_size", str(settings["train_size"])]
    if data_dir_for(args, dataset):
        cli += ["--data.data_dir", data_dir_for(args, dataset)]
    coupled(cli + list(getattr(args, "reference_flags", [])))
    meta = json.loads(Path(str(ckpt) + ".json").read_text())
    write_json(meta_path, meta)
    return meta


def run_row(args, row: dict, settings: dict, reference: dict | None, out: Path) -> dict:
    """Run a row through the CLI (resuming its run folder's last checkpoint if a session was cut short) and
    gather its numbers from the run's metrics.json."""
    rid = run_id(row["key"])
    folder = Path(args.runs_dir) / rid
    cli = fit_args(args, row, settings, reference)
    last = folder / "checkpoints" / "last.ckpt"
    coupled(cli + (["--ckpt_path", str(last)] if last.is_file() else []), {"COUPLED_RUN_ID": rid})
    return gather(row, folder, cli, settings, reference, out)


def adopt_row(args, row: dict, settings: dict, reference: dict | None, out: Path, folder: Path) -> dict:
    """A row from a finished run made by hand (``--adopt KEY=FOLDER``), so a long run is not made twice: refused
    unless every session's config of the run (and of the run it branched from, if it did) is the one the row's
    command resolves to (``--print_config``), up to where it wrote (scripts/run_config.py). The row keeps the
    command that reruns it and names the folder it was read from."""
    cli = fit_args(args, row, settings, reference)
    differ = config_differences(cli, folder / "config.yaml", ROOT)
    if differ:
        raise SystemExit(f"[reproduce] {folder} did not run {row['key']}'s recipe: it differs in "
                         f"{'; '.join(differ[:5])}; rerun the row instead of adopting it")
    epochs = json.loads((folder / "metrics.json").read_text())["epochs"]
    max_epochs = yaml.safe_load((folder / "config.yaml").read_text())["trainer"]["max_epochs"]
    if not epochs or epochs[-1].get("epoch") != max_epochs - 1:
        raise SystemExit(f"[reproduce] {folder} has not finished its {max_epochs} epochs; resume it first")
    return {**gather(row, folder, cli, settings, reference, out), "adopted_from": str(folder)}


def gather(row: dict, folder: Path, cli: list[str], settings: dict, reference: dict | None, out: Path) -> dict:
    """A row's record from its run folder: test metrics, curves, sample grid, the recipe as it ran."""
    metrics = json.loads((folder / "metrics.json").read_text())
    test, epochs = metrics["test"], metrics["epochs"]
    if "test/acc" not in test:  # stopped (a SIGTERM exits 0 after saving): not a result; the next run resumes it
        raise SystemExit(f"[reproduce] {row['key']} stopped before its test (last.ckpt is kept); rerun to resume it")
    curves = {k: [e[k] for e in epochs if k in e] for k in dict.fromkeys(k for e in epochs for k in e)
              if k.startswith(("val/", "train/"))}
    grids = sorted((folder / "samples").glob("test*.png"))
    if grids:
        (out / "samples").mkdir(parents=True, exist_ok=True)
        shutil.copyfile(grids[-1], out / "samples" / f"{row['key']}.png")
    approx = {m: [test[k] for k in sorted(test) if k.startswith(f"test/approx_error/{m}/")]
              for m in ("deterministic", "mean_variance")}
    seconds = [e["seconds"] for e in epochs if e.get("seconds")]
    ran = yaml.safe_load((folder / "config.yaml").read_text())["model"]  # the recipe as it ran, flags included
    return {
        "key": row["key"], "dataset": row["dataset"], "objective": row["objective"], "tied": row["tied"],
        "variant": row["variant"], "change": row["change"], "seed": row["seed"], "epochs": len(epochs),
        "test_acc": test.get("test/acc"), "elbo": test.get("test/elbo"),
        "log_likelihood": test.get("test/log_likelihood"),
        "log_likelihood_fitted": test.get("test/log_likelihood_fitted"),
        "log_likelihood_K": settings["eval_num_samples"],
        "self_consistency": test.get("test/self_consistency"),
        "sample_acc": test.get("test/sample_acc"), "sample_acc_means": test.get("test/sample_acc_means"),
        "diversity": test.get("test/diversity"), "approx_error": approx,
        "reference_test_acc": reference["test_acc"] if reference else None,  # the classifier that scored it
        "seconds_per_epoch": statistics.median(seconds) if seconds else None,
        "curves": curves, "samples_png": f"samples/{row['key']}.png",
        "recipe": {"config": row.get("config"), "hidden_sizes": ran["hidden_sizes"], "epochs": len(epochs),
                   "lr_schedule": ran["lr_schedule"], "objective_kwargs": ran.get("objective_kwargs") or {},
                   "train_size": settings["train_size"], "test_images": settings["test_images"]},
        "command": "coupled " + shlex.join(cli), "run_folder": str(folder),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else f"cpu ({os.cpu_count()} cores)",
    }


def write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1))
