"""Fit, then resume: from the local checkpoint, from a `wandb:` reference offline, and online (stubbed API)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import wandb
import yaml
from pytorch_lightning.loggers import WandbLogger

from coupled.main import main as run_main_raw
from coupled.resume import RUN_ID_KEY
from tests.cli_helpers import CONFIGS, csv_metrics, run_folders, run_main, tiny_args
from tests.conftest import copy_run

MNIST = str(CONFIGS / "symmetric.yaml")  # the trained run's config (deterministic)


def _ckpt(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _steps(logged: list) -> list[int]:
    return [step for step, metrics in logged if step is not None and any(k.startswith("train/") for k in metrics)]


# ---- what the first run left behind ----


def test_fit_leaves_one_run_folder(trained_run):
    run = trained_run["run_dir"]
    assert (run / "config.yaml").is_file()
    assert "objective: symmetric" in (run / "config.yaml").read_text()
    # each session's config is kept: the first's is config.yaml until a resume writes its own
    assert [p.name for p in (run / "sessions").iterdir()] == ["1.yaml"]
    assert (run / "sessions" / "1.yaml").read_text() == (run / "config.yaml").read_text()
    for name in ("best.ckpt", "last.ckpt", "index.json"):
        assert (run / "checkpoints" / name).is_file(), name
    assert sorted(p.name for p in (run / "samples").glob("*.png")) == ["epoch_0000.png", "epoch_0001.png",
                                                                       "test.png"]
    offline = list((run / "wandb").glob(f"offline-run-*-{trained_run['run_id']}"))
    assert len(offline) == 1  # W&B logged offline, into the run folder, under the run id
    assert (offline[0] / "files" / "coupled-config.yaml").is_file()  # the resolved config, with the run
    assert list((offline[0] / "files" / "media").rglob("*.png"))  # the sample grids, as W&B images


def test_checkpoints_hold_the_run_id_and_load_weights_only(trained_run):
    for name in ("best.ckpt", "last.ckpt"):
        ckpt = _ckpt(trained_run["run_dir"] / "checkpoints" / name)  # weights_only=True must work
        assert ckpt[RUN_ID_KEY] == trained_run["run_id"]
    assert _ckpt(trained_run["run_dir"] / "checkpoints" / "last.ckpt")["global_step"] > 0


def test_metrics_are_logged_under_the_issue_names(trained_run):
    keys = set().union(*(m.keys() for _, m in trained_run["logged"]))
    for key in ("val/acc", "val/loss", "val/self_consistency", "train/loss",
                "train/recognition", "train/generation", "test/acc", "test/elbo", "test/log_likelihood",
                "test/self_consistency"):
        assert any(k == key or k.startswith(key + "_") for k in keys), key
    val_acc = [m["val/acc"] for _, m in trained_run["logged"] if "val/acc" in m]
    assert max(val_acc) > 0.2  # the tiny problem is learnable: the numbers are real


def test_artifacts_are_staged_for_wandb_sync_and_kept_locally(trained_run):
    import json

    index = json.loads((trained_run["run_dir"] / "checkpoints" / "index.json").read_text())
    assert index["run_id"] == trained_run["run_id"] and index["project"] == "coupled"
    assert [v["version"] for v in index["versions"]] == list(range(len(index["versions"])))
    assert len(index["versions"]) >= 2  # one per epoch: the best improved, or last.ckpt was new
    assert set(index["aliases"]) == {"latest", "best"}
    assert index["aliases"]["latest"] == index["versions"][-1]["version"]
    staged = [p for p in (trained_run["root"] / "wandb_data").rglob("*") if p.is_file()]
    assert len(staged) >= len(index["versions"])  # offline: each version is staged for `wandb sync`


# ---- resuming ----


def _resume(trained: dict, dest: Path, ckpt_path: str, monkeypatch, *extra: str) -> tuple[list, Path]:
    run = copy_run(trained, dest)
    logged: list = []
    original = WandbLogger.log_metrics

    def recording(self, metrics, step=None):
        logged.append((step, dict(metrics)))
        return original(self, metrics, step)

    monkeypatch.setattr(WandbLogger, "log_metrics", recording)
    run_main(["fit", "--config", MNIST, *tiny_args(trained["data"]), "--trainer.max_epochs", "3",
              "--test_after_fit", "false", "--ckpt_path", ckpt_path, *extra])
    return logged, run


@pytest.fixture
def trained(trained_run, tiny_data):
    return {**trained_run, "data": tiny_data}


@pytest.mark.parametrize("how", ["local", "wandb-latest", "wandb-project-best"])
def test_resume_continues_the_same_run(cli_env, trained, monkeypatch, how):
    run_id = trained["run_id"]
    ref = {
        "local": f"runs/{run_id}/checkpoints/last.ckpt",
        "wandb-latest": f"wandb:model-{run_id}:latest",
        "wandb-project-best": f"wandb:coupled/model-{run_id}:best",
    }[how]
    before = _ckpt(trained["run_dir"] / "checkpoints" / "last.ckpt")
    logged, run = _resume(trained, cli_env, ref, monkeypatch)

    assert [p.name for p in run_folders(cli_env)] == [run_id]  # no new run folder: the same run goes on
    offline = list((run / "wandb").glob(f"offline-run-*-{run_id}"))
    assert len(offline) == 2  # the W&B run with the same id was opened again
    after = _ckpt(run / "checkpoints" / "last.ckpt")
    assert after[RUN_ID_KEY] == run_id
    assert after["epoch"] == 2 and after["global_step"] > before["global_step"]
    first, second = (yaml.safe_load((run / "sessions" / f"{n}.yaml").read_text()) for n in (1, 2))
    assert first["ckpt_path"] is None  # the resume's config beside the first's, naming what it resumed from
    assert run.resolve() in (cli_env / second["ckpt_path"]).resolve().parents
    assert (run / "sessions" / "2.yaml").read_text() == (run / "config.yaml").read_text()
    resumed_steps = _steps(logged)
    assert resumed_steps and min(resumed_steps) > max(_steps(trained["logged"]))  # monotone steps


def test_resume_with_a_version_reference(cli_env, trained, monkeypatch):
    run_id = trained["run_id"]
    run = copy_run(trained, cli_env)
    before = (run / "config.yaml").read_text().replace("max_epochs: 2", "max_epochs: 7")
    assert before != (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(before)  # a config of its own, to tell the sessions apart
    shutil.rmtree(run / "sessions")  # as a run made before sessions were kept
    run_main(["fit", "--config", MNIST, *tiny_args(trained["data"]), "--trainer.max_epochs", "3",
              "--test_after_fit", "false", "--ckpt_path", f"wandb:model-{run_id}:v0", "--trainer.logger", "false"])
    assert _ckpt(run / "checkpoints" / "last.ckpt")[RUN_ID_KEY] == run_id
    # its config.yaml as it was is its first session kept, the resume's the second
    assert (run / "sessions" / "1.yaml").read_text() == before
    assert (run / "sessions" / "2.yaml").read_text() == (run / "config.yaml").read_text() != before


# ---- online: the download itself is stubbed (no W&B server can run here) ----


class _StubArtifact:
    def __init__(self, source: Path):
        self.source = source

    def download(self, root: str) -> str:
        Path(root).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(self.source, Path(root) / "model.ckpt")
        return root


def test_resume_online_downloads_on_this_rank_with_the_api(cli_env, trained, monkeypatch):
    """Online: the reference goes to `wandb.Api().artifact(...)` (stubbed) and the run id comes along."""
    run_id = trained["run_id"]
    source = trained["run_dir"] / "checkpoints" / "best.ckpt"
    calls: list[tuple[str, str]] = []

    class StubApi:
        def artifact(self, name: str, type: str | None = None):  # noqa: A002 - wandb's own signature
            calls.append((name, type))
            return _StubArtifact(source)

    monkeypatch.setattr(wandb, "Api", StubApi)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    run_main(["fit", "--config", MNIST, *tiny_args(trained["data"]), "--trainer.max_epochs", "3",
              "--test_after_fit", "false", "--ckpt_path", f"wandb:someone/coupled/model-{run_id}:best",
              "--trainer.logger", "pytorch_lightning.loggers.CSVLogger", "--trainer.logger.save_dir", "csv"])
    assert calls == [(f"someone/coupled/model-{run_id}:best", "model")]
    downloaded = cli_env / "runs" / run_id / "downloads" / "best" / "rank0" / "model.ckpt"
    assert downloaded.is_file()
    assert _ckpt(cli_env / "runs" / run_id / "checkpoints" / "last.ckpt")[RUN_ID_KEY] == run_id
    epochs = {int(r["epoch"]) for r in csv_metrics(cli_env / "csv") if r.get("val/acc")}
    assert min(epochs) >= 1  # it continued from the downloaded epoch, not from scratch


def test_online_reference_that_matches_nothing_is_one_line(cli_env, trained, monkeypatch, capsys):
    class NotFound:
        def artifact(self, name, type=None):  # noqa: A002
            raise wandb.errors.CommError(f"artifact {name} not found\nmore detail")

    monkeypatch.setattr(wandb, "Api", NotFound)
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    with pytest.raises(SystemExit) as info:
        from coupled.main import main

        main(["fit", "--config", MNIST, *tiny_args(trained["data"]), "--ckpt_path", "wandb:model-nope:latest"])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["coupled: error: wandb:coupled/model-nope:latest matches nothing on W&B: artifact "
                   "coupled/model-nope:latest not found"]


def test_predict_on_a_wandb_reference_writes_class_probabilities(cli_env, trained, monkeypatch, capsys):
    import functools

    from pytorch_lightning import Trainer

    copy_run(trained, cli_env)
    outputs = []
    original = Trainer.predict

    @functools.wraps(original)  # the CLI builds the subcommand's flags from this signature
    def recording(self, *args, **kwargs):
        outputs.append(original(self, *args, **kwargs))
        return outputs[-1]

    monkeypatch.setattr(Trainer, "predict", recording)
    run_main(["predict", "--config", MNIST, *tiny_args(trained["data"]),
              "--ckpt_path", f"wandb:model-{trained['run_id']}:best"])
    probs = torch.cat(outputs[0])
    assert probs.shape == (61, 10)  # every test image once, one probability per class
    torch.testing.assert_close(probs.sum(1), torch.ones(61))
    # and the CLI user gets them as a file in the run folder, and is told where
    (written,) = (cli_env / "runs").glob("*/predictions.npz")
    saved = np.load(written)
    torch.testing.assert_close(torch.from_numpy(saved["probs"]), probs)
    assert saved["pred"].tolist() == probs.argmax(1).tolist() and saved["index"].tolist() == list(range(61))
    assert f"wrote 61 predictions to {written.relative_to(cli_env)}" in capsys.readouterr().out


@pytest.mark.parametrize("how", ["env", "logger_id"])
def test_a_new_model_in_an_existing_run_is_refused(cli_env, trained, monkeypatch, capsys, how):
    """A reused run id without --ckpt_path would overwrite last.ckpt and repoint latest/best: one line, nothing
    touched."""
    run = copy_run(trained, cli_env)
    run_id = trained["run_id"]
    before = {p.name: p.read_bytes() for p in (run / "checkpoints").glob("*") if p.is_file()}
    extra = ["--trainer.logger.init_args.id", run_id] if how == "logger_id" else []
    if how == "env":
        monkeypatch.setenv("COUPLED_RUN_ID", run_id)
    with pytest.raises(SystemExit) as info:
        run_main_raw(["fit", "--config", MNIST, *tiny_args(trained["data"]), "--trainer.max_epochs", "1", *extra])
    err = capsys.readouterr().err.strip()
    assert info.value.code == 2 and "\n" not in err, err
    assert f"run {run_id} already has checkpoints" in err and f"--ckpt_path wandb:model-{run_id}:latest" in err
    assert {p.name: p.read_bytes() for p in (run / "checkpoints").glob("*") if p.is_file()} == before
