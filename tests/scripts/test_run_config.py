"""The check behind `make reproduce --adopt`: a run folder's config against what a command line resolves to."""

from __future__ import annotations

import subprocess

import pytest
import yaml

import scripts.run_config as run_config


def _resolving_to(monkeypatch, config: dict) -> None:
    printed = subprocess.CompletedProcess([], 0, stdout=yaml.safe_dump(config), stderr="")
    monkeypatch.setattr(run_config.subprocess, "run", lambda *a, **k: printed)


WANT = {"seed_everything": 0, "runs_dir": "runs", "trainer": {"max_epochs": 200, "default_root_dir": None},
        "model": {"objective_kwargs": {"num_samples": 5}, "objective_start_epochs": None},
        "checkpoint": {"dirpath": None, "monitor": "val/loss"}}


def test_a_run_that_differs_only_in_where_it_wrote_is_the_same_recipe(tmp_path, monkeypatch):
    _resolving_to(monkeypatch, WANT)
    ran = {**WANT, "runs_dir": ".cache/runs_h", "trainer": {"max_epochs": 200, "default_root_dir": "x/run"},
           "checkpoint": {"dirpath": "x/run/checkpoints", "monitor": "val/loss"},
           "model": {"objective_kwargs": {"num_samples": 5}}}  # made before objective_start_epochs existed
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(ran))
    assert run_config.config_differences(["fit"], tmp_path / "config.yaml", tmp_path) == []
    # one file named relative to the repository by hand and absolute by make reproduce: the same classifier
    (tmp_path / "ref.ckpt").write_bytes(b"")
    _resolving_to(monkeypatch, {**WANT, "sample_quality": {"classifier_ckpt": str(tmp_path / "ref.ckpt")}})
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**ran, "sample_quality": {"classifier_ckpt": "ref.ckpt"}}))
    assert run_config.config_differences(["fit"], tmp_path / "config.yaml", tmp_path) == []
    (tmp_path / "config.yaml").write_text(yaml.safe_dump({**ran, "sample_quality": {"classifier_ckpt": "other.ckpt"}}))
    assert len(run_config.config_differences(["fit"], tmp_path / "config.yaml", tmp_path)) == 1


def test_a_resumed_run_names_its_own_checkpoint_and_data_may_come_from_the_environment(tmp_path, monkeypatch):
    _resolving_to(monkeypatch, {**WANT, "ckpt_path": None, "data": {"init_args": {"data_dir": "/data/mnist"}}})
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)

    def differences(ckpt_path, data_dir):
        cfg = {**WANT, "ckpt_path": ckpt_path, "data": {"init_args": {"data_dir": data_dir}}}
        (run / "config.yaml").write_text(yaml.safe_dump(cfg))
        return run_config.config_differences(["fit"], run / "config.yaml", tmp_path)

    assert differences(str(run / "checkpoints" / "last.ckpt"), None) == []  # its own last session, $COUPLED_DATA_DIR
    assert differences("run/checkpoints/last.ckpt", "/data/mnist") == []
    assert differences(str(tmp_path / "other" / "last.ckpt"), None) == [  # started from another run's weights
        f"ckpt_path ({str(tmp_path / 'other' / 'last.ckpt')!r}, not None)"]
    assert differences(None, "/data/fashion_mnist") == [
        "data.init_args.data_dir ('/data/fashion_mnist', not '/data/mnist')"]


def test_a_run_with_another_recipe_is_named_by_its_differing_keys(tmp_path, monkeypatch):
    _resolving_to(monkeypatch, WANT)
    ran = {**WANT, "seed_everything": 1,
           "model": {"objective_kwargs": {"num_samples": 5, "sample_consistency_weight": 10.0},
                     "objective_start_epochs": {"sample_consistency_weight": 150}}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(ran))
    assert run_config.config_differences(["fit"], tmp_path / "config.yaml", tmp_path) == [
        "model.objective_kwargs.sample_consistency_weight (10.0, not None)",
        "model.objective_start_epochs.sample_consistency_weight (150, not None)",
        "seed_everything (1, not 0)"]


def test_adopt_is_checked_before_any_row_runs(tmp_path, monkeypatch):
    import scripts.study as study
    from scripts.reproduce import main

    monkeypatch.setattr(study, "coupled", lambda cli, env=None: pytest.fail(f"ran: {cli}"))
    with pytest.raises(SystemExit, match="KEY=FOLDER"):
        main(["--report-only", "--adopt", "mnist-rws_make_train-tied-s0"])
    out = ["--out", str(tmp_path), "--ckpt-dir", str(tmp_path)]
    with pytest.raises(SystemExit, match="mnist-rws_make_train-tied-s7 not a row this study runs"):
        main([*out, "--only", "make_train", "--adopt", "mnist-rws_make_train-tied-s7=x"])
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "mnist-rws_make_train-tied-s1.json").write_text("{}")
    with pytest.raises(SystemExit, match="mnist-rws_make_train-tied-s1 already recorded"):
        main([*out, "--only", "make_train", "--adopt", "mnist-rws_make_train-tied-s1=x"])


def test_a_run_branched_from_a_source_before_its_late_terms_is_checked_against_both(tmp_path, monkeypatch):
    late = {"objective_kwargs": {"num_samples": 5, "sample_consistency_weight": 3.0,
                                 "sample_consistency_reader": "frozen"},
            "objective_start_epochs": {"sample_consistency_weight": 150}}
    _resolving_to(monkeypatch, {**WANT, "ckpt_path": None, "model": late})
    source, branch = tmp_path / "source", tmp_path / "branch"
    (source / "checkpoints").mkdir(parents=True)
    branch.mkdir()
    before = str(source / "checkpoints" / "before_epoch150.ckpt")

    def differences(source_model, ckpt_path=before, branch_model=late, seed=0):
        (source / "config.yaml").write_text(yaml.safe_dump({**WANT, "seed_everything": seed, "model": source_model}))
        cfg = {**WANT, "ckpt_path": ckpt_path, "model": branch_model}
        (branch / "config.yaml").write_text(yaml.safe_dump(cfg))
        return run_config.config_differences(["fit"], branch / "config.yaml", tmp_path)

    # the source ran another late term (weight 10, the reader trained) from the same epoch: the same first 150 epochs
    other = {"objective_kwargs": {"num_samples": 5, "sample_consistency_weight": 10.0},
             "objective_start_epochs": {"sample_consistency_weight": 150}}
    assert differences(other) == []
    assert differences(WANT["model"]) == []  # or none at all (its before_epoch150.ckpt copied by hand)
    assert differences(other, seed=1) == [f"{source} before epoch 150: seed_everything (1, not 0)"]
    early = {**other, "objective_start_epochs": {"sample_consistency_weight": 100}}  # on before the branch
    assert differences(early) == [
        f"{source} before epoch 150: model.objective_kwargs.sample_consistency_weight (10.0, not None)",
        f"{source} before epoch 150: model.objective_start_epochs.sample_consistency_weight (100, not None)"]
    # a recipe whose term starts at 120 cannot branch at 150: the source ran 30 of its epochs without it
    on_early = {**late, "objective_start_epochs": {"sample_consistency_weight": 120}}
    _resolving_to(monkeypatch, {**WANT, "ckpt_path": None, "model": on_early})
    assert differences(other, branch_model=on_early) == [
        f"{source} before epoch 150: model.objective_kwargs.sample_consistency_reader (None, not 'frozen')",
        f"{source} before epoch 150: model.objective_kwargs.sample_consistency_weight (None, not 3.0)",
        f"{source} before epoch 150: model.objective_start_epochs.sample_consistency_weight (None, not 120)"]
    _resolving_to(monkeypatch, {**WANT, "ckpt_path": None, "model": late})
    # any other checkpoint of another run is a start from its weights, not a branch
    assert differences(other, ckpt_path=str(source / "checkpoints" / "last.ckpt")) == [
        f"ckpt_path ({str(source / 'checkpoints' / 'last.ckpt')!r}, not None)"]
    (source / "config.yaml").unlink()
    (branch / "config.yaml").write_text(yaml.safe_dump({**WANT, "ckpt_path": before, "model": late}))
    assert run_config.config_differences(["fit"], branch / "config.yaml", tmp_path) == [
        f"ckpt_path (branched from {source}, which has no config.yaml)"]


def test_every_session_of_a_run_is_checked(tmp_path, monkeypatch):
    _resolving_to(monkeypatch, {**WANT, "ckpt_path": None})
    run = tmp_path / "run"
    (run / "sessions").mkdir(parents=True)
    resumed = {**WANT, "ckpt_path": str(run / "checkpoints" / "last.ckpt")}
    (run / "config.yaml").write_text(yaml.safe_dump(resumed))
    (run / "sessions" / "2.yaml").write_text(yaml.safe_dump(resumed))
    (run / "sessions" / "10.yaml").write_text(yaml.safe_dump(resumed))
    (run / "sessions" / "1.yaml").write_text(yaml.safe_dump({**WANT, "seed_everything": 1, "ckpt_path": None}))
    # the last session (config.yaml) ran the recipe, the first did not: the run did not
    assert run_config.config_differences(["fit"], run / "config.yaml", tmp_path) == [
        "session 1: seed_everything (1, not 0)"]
    (run / "sessions" / "1.yaml").write_text(yaml.safe_dump({**WANT, "ckpt_path": None}))
    assert run_config.config_differences(["fit"], run / "config.yaml", tmp_path) == []
    assert [p.name for p in run_config.session_configs(run)] == ["1.yaml", "2.yaml", "10.yaml"]
