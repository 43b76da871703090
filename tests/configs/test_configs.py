"""Every config trains (fast_dev_run, then the test after fit) and the overlays compose with mnist.yaml."""

from __future__ import annotations

import pytest
import yaml

from coupled.cli import CoupledCLI
from coupled.main import main
from tests.cli_helpers import CONFIGS, run_cli, run_folders, tiny_args
from tests.conftest import subprocess_env

ALL = sorted(p.name for p in CONFIGS.glob("*.yaml"))
FULL = ["mnist.yaml", "symmetric.yaml", "fashion_mnist.yaml"]  # complete configs; the others overlay mnist.yaml


def _configs(name: str) -> list[str]:
    files = [name] if name in FULL else ["mnist.yaml", name]
    return [arg for f in files for arg in ("--config", str(CONFIGS / f))]


def test_the_issue_configs_exist():
    assert {"mnist.yaml", "symmetric.yaml", "rws.yaml", "vimco.yaml", "fashion_mnist.yaml", "discriminative.yaml",
            "wake_sleep.yaml", "untied.yaml", "ddp.yaml"} <= set(ALL)


def _print_config(args: list[str], capsys) -> dict:
    with pytest.raises(SystemExit) as info:
        main(["fit", *args, "--print_config"])
    assert info.value.code in (0, None)
    return yaml.safe_load(capsys.readouterr().out)


def test_mnist_is_the_tied_rws_recipe_and_symmetric_the_papers_experiment(cli_env, capsys):
    paper = _print_config(_configs("symmetric.yaml"), capsys)
    assert paper["model"]["objective"] == "symmetric" and paper["model"]["tied"] is True
    cfg = _print_config(_configs("mnist.yaml"), capsys)
    assert cfg["model"]["objective"] == "rws" and cfg["model"]["tied"] is True
    assert cfg["model"]["objective_kwargs"]["num_samples"] == 5 and cfg["model"]["fitted_proposal_steps"] > 0
    assert cfg["model"]["rbm_pretrain_epochs"] == 10 and paper["model"]["rbm_pretrain_epochs"] == 0
    assert cfg["data"]["class_path"] == "datamodules.MNISTDataModule"
    assert cfg["checkpoint"]["monitor"] == "val/loss" and cfg["checkpoint"]["mode"] == "min"
    assert cfg["model"]["objective_kwargs"]["top_weight"] == 10.0
    assert cfg["trainer"]["max_epochs"] == 200 and paper["checkpoint"]["monitor"] == "val/acc"
    assert cfg["trainer"]["logger"]["class_path"].endswith("WandbLogger")
    assert cfg["trainer"]["logger"]["init_args"]["project"] == "coupled"
    assert cfg["trainer"]["use_distributed_sampler"] is False


def test_one_key_of_objective_kwargs_merges_and_the_whole_dict_replaces(cli_env, capsys):
    """What the README tells users: `--model.objective_kwargs.KEY V` changes one term; a dict replaces them all."""
    base = _print_config(_configs("mnist.yaml"), capsys)["model"]["objective_kwargs"]
    one = _print_config([*_configs("mnist.yaml"), "--model.objective_kwargs.top_weight", "30"], capsys)
    assert one["model"]["objective_kwargs"] == {**base, "top_weight": 30}
    whole = _print_config([*_configs("mnist.yaml"), "--model.objective_kwargs", "{num_samples: 7}"], capsys)
    assert whole["model"]["objective_kwargs"] == {"num_samples": 7}


@pytest.mark.parametrize(
    ("overlay", "key", "value"),
    [
        ("wake_sleep.yaml", "objective", "wake_sleep"),
        ("hybrid.yaml", "objective", "hybrid"),
        ("discriminative.yaml", "objective", "discriminative"),
        ("untied.yaml", "tied", False),
        ("rws.yaml", "objective", "rws"),
        ("vimco.yaml", "objective", "vimco"),
    ],
)
def test_overlays_compose_with_mnist(cli_env, capsys, overlay, key, value):
    cfg = _print_config(_configs(overlay), capsys)
    assert cfg["model"][key] == value
    assert cfg["model"]["hidden_sizes"] == [512, 512, 512]  # the rest comes from mnist.yaml
    assert cfg["data"]["class_path"] == "datamodules.MNISTDataModule"


MIXTW200_W001 = {"num_samples": 5, "generation_weight": 0.01, "q_weight": 0.01, "sleep_weight": 0.0,
                 "recognition_weight": 1.0, "top_weight": 10.0, "method": "deterministic", "mean_variance_weight": 1.0}
SC3F = {"sample_consistency_weight": 3.0, "sample_consistency_rows": 32, "sample_consistency_reader": "frozen"}


def test_mnist_is_the_reported_sc3f_l150_recipe(cli_env, capsys):
    """`make train` is the command of reports/GENERATIVE.md's SC3F-L150 runs: MIXTW200-w0.01's objective with the
    frozen-reader sample-consistency term at weight 3 from epoch 150."""
    cfg = _print_config(_configs("mnist.yaml"), capsys)
    assert cfg["model"]["hidden_sizes"] == [512, 512, 512]
    assert cfg["model"]["objective_kwargs"] == {**MIXTW200_W001, **SC3F}
    assert cfg["model"]["objective_start_epochs"] == {"sample_consistency_weight": 150}
    assert (cfg["model"]["lr"], cfg["model"]["lr_schedule"], cfg["data"]["init_args"]["batch_size"]) == \
        (0.001, "cosine", 128)
    # the study's SC3F-L150 command, mnist.yaml + sample_consistency_frozen.yaml, resolves to make train's
    assert _print_config(_configs("sample_consistency_frozen.yaml"), capsys) == cfg


def _mixtw200(capsys) -> dict:
    return _print_config([*_configs("mnist.yaml"), "--config", str(CONFIGS / "mixtw200_w001.yaml")], capsys)


def test_mixtw200_w001_overlay_is_the_previous_make_train(cli_env, capsys):
    """configs/mixtw200_w001.yaml on mnist.yaml gives back MIXTW200-w0.01, make train before SC3F-L150: the same
    config without the late term."""
    base = _print_config(_configs("mnist.yaml"), capsys)
    cfg = _mixtw200(capsys)
    assert cfg["model"]["objective_kwargs"] == MIXTW200_W001 and cfg["model"]["objective_start_epochs"] is None
    changed = ("objective_kwargs", "objective_start_epochs")
    assert {k: v for k, v in cfg["model"].items() if k not in changed} == \
        {k: v for k, v in base["model"].items() if k not in changed}
    assert cfg["trainer"] == base["trainer"] and cfg["data"] == base["data"]


@pytest.mark.parametrize("name", sorted(set(ALL) - set(FULL) - {"reference_cnn.yaml"}))  # that one: coupled reference
def test_an_overlay_that_sets_the_objective_drops_the_late_term(cli_env, capsys, name):
    """mnist.yaml starts its sample-consistency term at epoch 150; an overlay that replaces the objective's options
    without that term must drop its start too, or the run would refuse to start (a start for an absent weight)."""
    cfg = _print_config(_configs(name), capsys)["model"]
    starts = cfg["objective_start_epochs"] or {}
    assert set(starts) <= set(cfg["objective_kwargs"] or {}), f"{name}: starts {starts} for absent weights"


def test_sample_consistency_overlay_is_make_train_with_the_term(cli_env, capsys):
    """configs/sample_consistency.yaml on mnist.yaml is SC10: MIXTW200-w0.01 (make train's objective when it ran)
    with the sample-consistency term at weight 10 on 32 labels a batch from the start, nothing else changed."""
    base = _mixtw200(capsys)
    cfg = _print_config(_configs("sample_consistency.yaml"), capsys)
    assert cfg["model"]["objective_kwargs"] == {**base["model"]["objective_kwargs"], "sample_consistency_weight": 10.0,
                                                "sample_consistency_rows": 32}
    assert {k: v for k, v in cfg["model"].items() if k != "objective_kwargs"} == \
        {k: v for k, v in base["model"].items() if k != "objective_kwargs"}
    assert cfg["trainer"] == base["trainer"] and cfg["data"] == base["data"]


def test_late_overlay_starts_the_term_at_epoch_150(cli_env, capsys):
    """configs/sample_consistency_late.yaml on the two: SC10-L150, SC10 with the term trained from epoch 150 on."""
    sc10 = _print_config(_configs("sample_consistency.yaml"), capsys)
    late = ["--config", str(CONFIGS / "sample_consistency_late.yaml")]
    cfg = _print_config([*_configs("sample_consistency.yaml"), *late], capsys)
    assert cfg["model"]["objective_start_epochs"] == {"sample_consistency_weight": 150}
    assert sc10["model"]["objective_start_epochs"] is None
    assert {k: v for k, v in cfg["model"].items() if k != "objective_start_epochs"} == \
        {k: v for k, v in sc10["model"].items() if k != "objective_start_epochs"}
    assert cfg["trainer"]["max_epochs"] == 200


def test_frozen_overlay_is_make_train_with_the_frozen_term_from_epoch_150(cli_env, capsys):
    """configs/sample_consistency_frozen.yaml on mnist.yaml: SC3F-L150, MIXTW200-w0.01 with the term at weight 3,
    its reader frozen, trained from epoch 150; nothing else changed."""
    base = _mixtw200(capsys)
    cfg = _print_config(_configs("sample_consistency_frozen.yaml"), capsys)
    assert cfg["model"]["objective_kwargs"] == {**base["model"]["objective_kwargs"], "sample_consistency_weight": 3.0,
                                                "sample_consistency_rows": 32, "sample_consistency_reader": "frozen"}
    assert cfg["model"]["objective_start_epochs"] == {"sample_consistency_weight": 150}
    changed = ("objective_kwargs", "objective_start_epochs")
    assert {k: v for k, v in cfg["model"].items() if k not in changed} == \
        {k: v for k, v in base["model"].items() if k not in changed}
    assert cfg["trainer"] == base["trainer"] and cfg["data"] == base["data"]


DTW200_W0005 = {"num_samples": 5, "generation_weight": 0.005, "q_weight": 0.005, "sleep_weight": 0.0,
                "recognition_weight": 1.0, "top_weight": 10.0}


def test_dtw200_w0005_overlay_is_the_previous_make_train(cli_env, capsys):
    """configs/dtw200_w0005.yaml on mnist.yaml gives back DTW200-w0.005, make train before MIXTW200-w0.01: its
    objective's settings, the rest of mnist.yaml unchanged."""
    base = _mixtw200(capsys)
    cfg = _print_config(_configs("dtw200_w0005.yaml"), capsys)
    assert cfg["model"]["objective_kwargs"] == DTW200_W0005
    assert {k: v for k, v in cfg["model"].items() if k != "objective_kwargs"} == \
        {k: v for k, v in base["model"].items() if k != "objective_kwargs"}
    assert cfg["trainer"] == base["trainer"] and cfg["data"] == base["data"]


def test_tw200_overlay_is_the_previous_make_train(cli_env, capsys):
    """configs/tw200.yaml on mnist.yaml gives back TW200, the recipe of the report's runs before the switch."""
    cfg = _print_config(_configs("tw200.yaml"), capsys)
    assert cfg["model"]["hidden_sizes"] == [512, 512]
    assert cfg["model"]["objective_kwargs"] == {"num_samples": 5, "generation_weight": 0.03, "q_weight": 0.03,
                                                "sleep_weight": 0.0, "recognition_weight": 1.0, "top_weight": 10.0}
    assert (cfg["model"]["objective"], cfg["model"]["tied"], cfg["model"]["rbm_pretrain_epochs"]) == ("rws", True, 10)
    assert cfg["trainer"]["max_epochs"] == 200 and cfg["checkpoint"]["monitor"] == "val/loss"


@pytest.mark.parametrize("name, changed", [
    ("mean_variance.yaml", {"method": "mean_variance"}),
    ("both_passes.yaml", {"method": "deterministic", "mean_variance_weight": 1.0}),
])
def test_recognition_pass_overlays_are_make_train_with_one_change(cli_env, capsys, name, changed):
    """configs/mean_variance.yaml on mnist.yaml is the MVTW200-w0.005 run (the recognition term through the
    mean-variance pass), configs/both_passes.yaml the MIXTW200-w0.005 run (the deterministic pass kept and the
    mean-variance pass's cross-entropy added at weight 1): DTW200-w0.005's objective with those keys, nothing
    else of mnist.yaml changed."""
    base = _mixtw200(capsys)
    cfg = _print_config(_configs(name), capsys)
    assert cfg["model"]["objective_kwargs"] == {**DTW200_W0005, **changed}
    assert {k: v for k, v in cfg["model"].items() if k != "objective_kwargs"} == \
        {k: v for k, v in base["model"].items() if k != "objective_kwargs"}
    assert cfg["trainer"] == base["trainer"]


CHEAPER = {  # the candidates for issue 15's time limit: make train with one setting changed
    "k3.yaml": ("objective_kwargs", "num_samples", 5, 3),  # SC3F-L150-K3: K = 3 states from q(h|x)
    "w400.yaml": ("model", "hidden_sizes", [512, 512, 512], [400, 400, 400]),  # SC3F-L150-W400: narrower layers
}


@pytest.mark.parametrize("name", sorted(CHEAPER))
def test_time_limit_overlays_change_one_setting_of_make_train(cli_env, capsys, name):
    """k3.yaml and w400.yaml on mnist.yaml are make train with one setting changed, nothing else (its late term and
    that term's start included)."""
    where, key, before, after = CHEAPER[name]
    base = _print_config(_configs("mnist.yaml"), capsys)
    cfg = _print_config(_configs(name), capsys)
    part = (lambda c: c["model"]["objective_kwargs"]) if where == "objective_kwargs" else (lambda c: c["model"])
    assert part(base)[key] == before and part(cfg)[key] == after
    part(base)[key] = after
    assert cfg["model"] == base["model"] and cfg["trainer"] == base["trainer"] and cfg["data"] == base["data"]


def test_rbm_overlay_adds_pretraining_to_a_complete_config(cli_env, capsys):
    """mnist.yaml pretrains already; the overlay is for the others (the paper's experiment, Fashion-MNIST)."""
    cfg = _print_config([*_configs("symmetric.yaml"), "--config", str(CONFIGS / "rbm.yaml")], capsys)
    assert cfg["model"]["rbm_pretrain_epochs"] == 10 and cfg["model"]["rbm_cd_steps"] == 1
    assert cfg["model"]["objective"] == "symmetric"


def test_ddp_overlay_sets_strategy_flags(cli_env, capsys):
    cfg = _print_config(_configs("ddp.yaml"), capsys)
    assert cfg["trainer"]["strategy"] == "ddp" and cfg["trainer"]["devices"] == 2


EXPECT = {
    "mnist.yaml": ("rws", True, "MNISTDataModule"),
    "symmetric.yaml": ("symmetric", True, "MNISTDataModule"),
    "fashion_mnist.yaml": ("symmetric", True, "FashionMNISTDataModule"),
    "discriminative.yaml": ("discriminative", True, "MNISTDataModule"),
    "wake_sleep.yaml": ("wake_sleep", True, "MNISTDataModule"),
    "hybrid.yaml": ("hybrid", True, "MNISTDataModule"),
    "untied.yaml": ("rws", False, "MNISTDataModule"),
    "rws.yaml": ("rws", True, "MNISTDataModule"),
    "vimco.yaml": ("vimco", True, "MNISTDataModule"),
    "tw200.yaml": ("rws", True, "MNISTDataModule"),
    "mean_variance.yaml": ("rws", True, "MNISTDataModule"),
    "both_passes.yaml": ("rws", True, "MNISTDataModule"),
    "dtw200_w0005.yaml": ("rws", True, "MNISTDataModule"),
    "sample_consistency.yaml": ("rws", True, "MNISTDataModule"),
    "mixtw200_w001.yaml": ("rws", True, "MNISTDataModule"),
    "k3.yaml": ("rws", True, "MNISTDataModule"),
    "w400.yaml": ("rws", True, "MNISTDataModule"),
}


@pytest.mark.parametrize("name", sorted(EXPECT))
def test_fast_dev_run(cli_env, tiny_data, name):
    args = ["fit", *_configs(name), *tiny_args(tiny_data), "--trainer.fast_dev_run", "true",
            "--sample_grid.every_n_epochs", "1"]
    cli = CoupledCLI(args=args)
    objective, tied, data_class = EXPECT[name]
    assert cli.model.hparams.objective == objective and cli.model.net.tied is tied
    assert type(cli.datamodule).__name__ == data_class
    assert cli.model.net.sizes == [64, 16, 10]  # input size and class count linked from the data
    assert "test/acc" in cli.trainer.callback_metrics  # the test after fit ran
    (run,) = run_folders(cli_env)
    assert (run / "samples" / "epoch_0000.png").is_file() and (run / "samples" / "test.png").is_file()


def test_ddp_config_fast_dev_run_on_two_cpu_processes(tmp_path, tiny_data, decoded_cache):
    """`--config mnist.yaml --config ddp.yaml` on CPU: 2 processes, one run folder, test on rank 0."""
    args = ["fit", *_configs("ddp.yaml"), *tiny_args(tiny_data), "--trainer.fast_dev_run", "true"]
    proc = run_cli(args, subprocess_env(tmp_path, decoded_cache), tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test/acc" in proc.stdout  # the single-device test after the DDP fit printed its table
    assert proc.stdout.count("test/acc") == 1  # ... once: only rank 0 tested
    assert len(run_folders(tmp_path)) == 1, "both ranks must share one run id"
