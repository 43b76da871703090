"""The `coupled` command line: help, argument errors and user errors as one readable line."""

from __future__ import annotations

import pytest

from coupled.main import main
from tests.cli_helpers import CONFIGS, tiny_args

MNIST = str(CONFIGS / "mnist.yaml")


def _exit_code(args: list[str]) -> int:
    with pytest.raises(SystemExit) as info:
        main(args)
    return info.value.code


def test_console_script_is_main():
    tomllib = pytest.importorskip("tomllib")

    from tests.conftest import REPO_ROOT

    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"coupled": "coupled.main:main"}


def test_no_subcommand_is_a_short_error(capsys):
    assert _exit_code([]) == 2
    err = capsys.readouterr().err
    assert "error:" in err and "subcommand" in err and "Traceback" not in err


def test_help_lists_subcommands(capsys):
    assert _exit_code(["--help"]) == 0
    out = capsys.readouterr().out
    for sub in ("fit", "validate", "test"):
        assert sub in out
    assert "usage: coupled" in out


def test_fit_help_lists_trainer_model_and_project_flags(capsys):
    assert _exit_code(["fit", "--help"]) == 0
    out = capsys.readouterr().out
    for flag in ("--trainer.strategy", "--trainer.devices", "--trainer.num_nodes", "--trainer.precision",
                 "--trainer.max_epochs", "--model.objective", "--model.tied", "--data", "--ckpt_path",
                 "--runs_dir", "--test_after_fit", "--checkpoint.monitor", "--sample_grid.every_n_epochs",
                 "--model.self_consistency_per_class", "--artifacts.keep_local_versions"):
        assert flag in out, flag
    assert "data.input_dim --> model.input_dim" in out
    assert "data.num_classes --> model.num_classes" in out


def test_bad_flag_is_a_short_readable_error(cli_env, capsys):
    assert _exit_code(["fit", "--config", MNIST, "--model.bogus", "3"]) == 2
    err = capsys.readouterr().err
    assert "error: unrecognized arguments: --model.bogus 3" in err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) <= 4, err


def test_bad_value_names_the_flag(cli_env, capsys):
    assert _exit_code(["fit", "--config", MNIST, "--trainer.max_epochs", "abc"]) == 2
    err = capsys.readouterr().err
    assert 'Parser key "trainer.max_epochs"' in err and "Traceback" not in err


def test_missing_config_file(cli_env, capsys):
    assert _exit_code(["fit", "--config", "nope.yaml"]) == 2
    err = capsys.readouterr().err
    assert "nope.yaml" in err and "does not exist" in err and "Traceback" not in err


def _one_line_error(capsys) -> str:
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("coupled: error: ")]
    assert len(err) == 1, err
    return err[0]


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (["--data.data_dir", "/nonexistent/folder"], "data_dir '/nonexistent/folder' does not exist"),
        (["--model.objective", "nope"], "unknown objective 'nope'"),
        (["--ckpt_path", "missing.ckpt"], "missing.ckpt does not exist"),
        (["--ckpt_path", "wandb:model-zzzz9999:best"], "wandb:model-zzzz9999:best matches nothing"),
        (["--ckpt_path", "wandb:a/b/c/model-x"], "bad checkpoint reference"),
        (["--ckpt_path", "wandb:model-abc:newest"], "the alias must be latest, best or vN"),
    ],
)
def test_user_errors_are_one_line_exit_2(cli_env, tiny_data, capsys, extra, expected):
    args = ["fit", "--config", MNIST, *tiny_args(tiny_data), "--trainer.max_epochs", "1", *extra]
    assert _exit_code(args) == 2
    line = _one_line_error(capsys)
    assert expected in line, line


def test_unreadable_checkpoint_is_one_line(cli_env, tiny_data, capsys):
    bad = cli_env / "bad.ckpt"
    bad.write_bytes(b"not a checkpoint")
    assert _exit_code(["fit", "--config", MNIST, *tiny_args(tiny_data), "--ckpt_path", str(bad)]) == 2
    assert "bad.ckpt" in _one_line_error(capsys)


def test_bad_yaml_config_is_an_error_not_a_traceback(cli_env, capsys):
    bad = cli_env / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    assert _exit_code(["fit", "--config", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "error" in err


def test_online_without_api_key_is_refused_not_prompted(cli_env, tiny_data, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_MODE", "online")
    assert _exit_code(["fit", "--config", MNIST, *tiny_args(tiny_data)]) == 2
    assert "no W&B API key" in _one_line_error(capsys)


def test_a_real_bug_still_shows_its_traceback(cli_env, tiny_data, monkeypatch):
    from lightning_modules import learner

    def broken(self, batch, batch_idx):
        raise RuntimeError("a bug")

    monkeypatch.setattr(learner.GenerativeLearner, "training_step", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        main(["fit", "--config", MNIST, *tiny_args(tiny_data), "--trainer.fast_dev_run", "true",
              "--trainer.logger", "false"])


@pytest.mark.parametrize("precision", ["64-true", "bf16-true"])
def test_true_precisions_train_and_test(cli_env, tiny_data, precision):
    """Issue #14, point 3: the weights were cast but the DataModule's float32 images were not (a dtype error)."""
    import json

    from tests.cli_helpers import run_main

    run_main(["fit", "--config", str(CONFIGS / "symmetric.yaml"), *tiny_args(tiny_data), "--trainer.max_epochs", "1",
              "--trainer.precision", precision, "--runs_dir", str(cli_env / "runs")])
    (metrics,) = (cli_env / "runs").glob("*/metrics.json")
    test = json.loads(metrics.read_text())["test"]
    assert 0 <= test["test/acc"] <= 1 and test["test/log_likelihood"] < 0


def test_wandb_disabled_mode_runs(cli_env, tiny_data, monkeypatch):
    """Issue #14, point 10: WANDB_MODE=disabled failed with "no such file: .../coupled-config.yaml"."""
    import json

    from tests.cli_helpers import run_main

    monkeypatch.setenv("WANDB_MODE", "disabled")
    run_main(["fit", "--config", str(CONFIGS / "symmetric.yaml"), *tiny_args(tiny_data), "--trainer.max_epochs", "1",
              "--runs_dir", str(cli_env / "runs")])
    (folder,) = (cli_env / "runs").iterdir()
    assert (folder / "config.yaml").is_file() and (folder / "checkpoints" / "last.ckpt").is_file()
    assert json.loads((folder / "metrics.json").read_text())["test"]["test/acc"] is not None
