"""The reproduction matrix: which runs `make reproduce` makes, in which order."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from scripts.reproduce import OBJECTIVES, VARIANTS, rows


def test_the_matrix_has_three_seeds_for_mnist_tied_and_one_elsewhere():
    matrix = rows(quick=False)
    keys = [r["key"] for r in matrix]
    assert len(keys) == len(set(keys)) == 21  # 2 datasets x 3 objectives x tied/untied, + 2 seeds x 3, make train x 3
    assert all(r["config"] == "configs/mnist.yaml" and r["variant"] == "make_train" for r in matrix[-3:])
    assert [r["seed"] for r in matrix[-3:]] == [0, 1, 2]  # issue 15's targets are read over 3 seeds
    seeds = Counter((r["dataset"], r["objective"], r["tied"]) for r in matrix)
    for dataset in ("mnist", "fashion_mnist"):
        for objective in OBJECTIVES:
            assert seeds[(dataset, objective, True)] == (3 if dataset == "mnist" else 1)
            assert seeds[(dataset, objective, False)] == 1
    assert not any(r["variant"] for r in matrix[:-3])


def test_variants_come_after_the_matrix_and_only_when_asked():
    matrix, both = rows(quick=False), rows(quick=False, variants=True)
    assert both[: len(matrix)] == matrix
    extra = both[len(matrix):]
    assert len(extra) == sum(len(seeds) for *_, seeds in VARIANTS)
    assert all(r["dataset"] == "mnist" and r["tied"] and r["change"] for r in extra)
    wide = next(r for r in extra if r["variant"] == "wide")
    assert wide["hidden_sizes"] == [1024, 1024]
    assert rows(quick=True, variants=True) == rows(quick=True)  # the smoke run has no variants
    assert len(rows(quick=True)) == 13


def test_a_row_runs_through_the_cli_and_records_the_command_that_reruns_it(tmp_path, tiny_data, decoded_cache,
                                                                         monkeypatch):
    """One row end to end: `coupled reference`, then `coupled fit` with the row's configs and overrides; its
    numbers come back from the run's metrics.json, and its command is the one to copy."""
    import argparse
    import json
    import shlex

    from scripts.study import QUICK, _row, fit_args, run_row, train_reference
    from tests.conftest import subprocess_env

    for key, value in subprocess_env(tmp_path, decoded_cache).items():
        monkeypatch.setenv(key, value)
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "mnist").symlink_to(tiny_data, target_is_directory=True)
    tiny = ["--data.val_size", "101", "--data.batch_size", "32", "--data.test_batch_size", "16"]
    args = argparse.Namespace(data_dir=str(tmp_path / "data"), quick=True, frontier=False,
                              runs_dir=tmp_path / "runs", ckpt_dir=tmp_path / "ckpt",
                              fit_flags=[*tiny, "--model.hidden_sizes", "[16]", "--trainer.accelerator", "cpu"],
                              reference_flags=[*tiny, "--model.width", "4"])
    settings = {**QUICK, "train_size": None, "test_images": 32, "per_class": 5, "marginal_images": 4,
                "mc_samples": 5, "eval_num_samples": 4, "epochs": 2, "reference_epochs": 1}
    out = tmp_path / "report"
    reference = train_reference(args, "mnist", settings, out)
    assert 0 <= reference["test_acc"] <= 1 and reference["command"].startswith("coupled reference --config ")
    row = _row("mnist", "symmetric", True, 1)  # a seed other than the configs': the seed rows crashed once
    result = run_row(args, row, settings, reference, out)
    cli = fit_args(args, row, settings, reference)
    assert result["command"] == "coupled " + shlex.join(cli)
    assert cli[:3] == ["fit", "--config", "configs/symmetric.yaml"] and "--model.objective_kwargs" in cli
    assert json.loads(cli[cli.index("--model.objective_kwargs") + 1]) == {"generation_weight": 0.1}
    assert result["epochs"] == 2 and len(result["curves"]["val/acc"]) == 2
    # the recipe recorded is the one that ran: the fit flags' width, not the matrix's 512-512
    assert result["recipe"]["hidden_sizes"] == [16]
    assert result["recipe"]["objective_kwargs"]["generation_weight"] == 0.1
    for key in ("test_acc", "log_likelihood", "elbo", "self_consistency", "sample_acc", "sample_acc_means",
                "diversity"):
        assert result[key] is not None, key
    assert result["elbo"] <= result["log_likelihood"] + 1.0  # K = 4 against K = 1, a few images
    assert len(result["approx_error"]["deterministic"]) == 1  # one hidden layer
    assert (out / "samples" / f"{row['key']}.png").is_file()
    metrics = json.loads((tmp_path / "runs" / row["key"] / "metrics.json").read_text())
    assert metrics["test"]["test/acc"] == result["test_acc"]
    assert result["reference_test_acc"] == reference["test_acc"]  # the classifier that scored its samples
    # the same run adopted as its own row (--adopt) reads the same record; adopted as another seed's, it is refused
    from scripts.study import adopt_row
    folder = tmp_path / "runs" / row["key"]
    adopted = adopt_row(args, row, settings, reference, out, folder)
    assert adopted["adopted_from"] == str(folder) and adopted["command"] == result["command"]
    assert {k: v for k, v in adopted.items() if k != "adopted_from"} == result
    with pytest.raises(SystemExit, match=r"seed_everything \(1, not 2\)"):
        adopt_row(args, _row("mnist", "symmetric", True, 2), settings, reference, out, folder)


def test_a_row_stopped_before_its_test_is_not_recorded_and_resumes(tmp_path, monkeypatch):
    """A SIGTERM ends `coupled fit` with status 0 after saving last.ckpt; such a row has no test metrics and must
    not be written as done: the study stops, and its next run resumes the row from last.ckpt."""
    import argparse
    import json

    import scripts.study as study

    calls = []
    monkeypatch.setattr(study, "coupled", lambda cli, env=None: calls.append(cli))
    args = argparse.Namespace(data_dir=None, quick=True, frontier=False, runs_dir=tmp_path / "runs",
                              ckpt_dir=tmp_path, fit_flags=[])
    row = study._row("mnist", "symmetric", True, 0)
    folder = tmp_path / "runs" / study.run_id(row["key"])
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"")
    (folder / "metrics.json").write_text(json.dumps({"epochs": [{"epoch": 0, "val/acc": 0.5}], "test": {}}))
    with pytest.raises(SystemExit, match="stopped before its test"):
        study.run_row(args, row, study.QUICK, None, tmp_path / "report")
    assert calls[0][-2:] == ["--ckpt_path", str(folder / "checkpoints" / "last.ckpt")]  # it resumed the row


def test_a_reference_retrained_by_hand_replaces_the_studys_copy_of_its_record(tmp_path, monkeypatch):
    """`coupled reference --out` to the reference's path replaces the classifier that scores samples; the study's
    copy of its record (runs/reference-<dataset>.json) must follow, keep the old record, and not retrain."""
    import argparse
    import json

    import scripts.study as study

    monkeypatch.setattr(study, "coupled", lambda cli, env=None: pytest.fail(f"retrained: {cli}"))
    ckpt = tmp_path / "reference-mnist.ckpt"
    ckpt.write_bytes(b"weights")
    old = {"ckpt": str(ckpt), "test_acc": 0.9885, "command": "python scripts/reproduce.py --only reference-mnist"}
    new = {"ckpt": "elsewhere/reference-mnist.ckpt", "test_acc": 0.9882, "command": "coupled reference --out x"}
    Path(str(ckpt) + ".json").write_text(json.dumps(new))
    out = tmp_path / "report"
    (out / "runs").mkdir(parents=True)
    (out / "runs" / "reference-mnist.json").write_text(json.dumps(old))
    args = argparse.Namespace(quick=False, ckpt_dir=tmp_path, data_dir=None)
    want = {"ckpt": str(ckpt), "test_acc": 0.9882, "command": "coupled reference --out x",
            "replaced": [{"test_acc": 0.9885, "command": old["command"]}]}
    for _ in range(2):  # the second read finds the copy up to date: nothing is replaced twice
        assert study.train_reference(args, "mnist", study.FULL, out) == want
        assert json.loads((out / "runs" / "reference-mnist.json").read_text()) == want
    # the same classifier recorded by another command (an older copy's wording) is not a replacement
    Path(str(ckpt) + ".json").write_text(json.dumps({**new, "command": "coupled reference --out y"}))
    assert study.train_reference(args, "mnist", study.FULL, out) == want
