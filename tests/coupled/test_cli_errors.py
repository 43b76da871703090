"""Bad input, end to end: every case ends `coupled` with exit status 2 and ONE line on stderr, no traceback.

Each case runs the real entry point (`coupled.main.main`, in this process: it fails before any
training, in well under a second) on the tiny data set with W&B offline, and checks that stderr holds
exactly one non-empty line ``coupled: error: ...`` naming what is wrong. One case runs as a real process
(`python -m coupled`) to check the process's exit status and its whole output.
The cases are listed in docs/ERRORS.md (its "tested in" column names these tests).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import datasets
import pytest
import torch

from coupled.main import main
from tests.cli_helpers import CONFIGS, run_cli, tiny_args
from tests.conftest import subprocess_env
from tests.datamodules.helpers import make_dataset, make_images, write_split

MNIST = str(CONFIGS / "mnist.yaml")
PREFIX = "coupled: error: "


@dataclass
class Ctx:
    """What a case may use to build its arguments: a private folder and (lazily) the shared fixtures."""

    tmp: Path
    request: pytest.FixtureRequest

    def file(self, name: str, text: str) -> str:
        path = self.tmp / name
        path.write_text(text)
        return str(path)


Args = Callable[[Ctx], list[str]]


def _const(*args: str) -> Args:
    return lambda ctx: list(args)


# ---- bad data sets (hub layout, a few 6x6 images) ----


def _missing_label_column(ctx: Ctx) -> list[str]:
    root = ctx.tmp / "nolabel"
    feats = datasets.Features({"image": datasets.Image(), "target": datasets.ClassLabel(names=["a", "b"])})
    for split in ("train", "test"):
        write_split(root / f"{split}-00000-of-00001.parquet", make_images(4, (6, 6), "L", seed=0), None,
                    mode="L", features=feats, extra={"target": [0, 1, 0, 1]})
    return ["--data.data_dir", str(root), "--data.val_size", "1", "--data.batch_size", "1"]


def _string_image_column(ctx: Ctx) -> list[str]:
    root = ctx.tmp / "strimg"
    root.mkdir()
    feats = datasets.Features({"image": datasets.Value("string"), "label": datasets.ClassLabel(names=["a", "b"])})
    for split in ("train", "test"):
        datasets.Dataset.from_dict({"image": ["x", "y"], "label": [0, 1]}, features=feats).to_parquet(
            str(root / f"{split}-00000-of-00001.parquet"))
    return ["--data.data_dir", str(root), "--data.val_size", "1", "--data.batch_size", "1"]


def _empty_test_split(ctx: Ctx) -> list[str]:
    root = ctx.tmp / "emptytest"
    write_split(root / "train-00000-of-00001.parquet", make_images(4, (6, 6), "L", seed=0), [0, 1, 0, 1],
                mode="L", names=["a", "b"])
    write_split(root / "test-00000-of-00001.parquet", [], [], mode="L", names=["a", "b"])
    return ["--data.data_dir", str(root), "--data.val_size", "1", "--data.batch_size", "1"]


# ---- bad checkpoints ----


def _truncated_checkpoint(ctx: Ctx) -> list[str]:
    path = ctx.tmp / "cut.ckpt"
    torch.save({"state_dict": {"w": torch.zeros(1000)}, "epoch": 0}, path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return ["--ckpt_path", str(path)]


def _trained_checkpoint(ctx: Ctx) -> Path:
    """A private copy of the shared trained run's last.ckpt (tiny data: sizes [64, 16, 10])."""
    trained = ctx.request.getfixturevalue("trained_run")
    dst = ctx.tmp / "trained.ckpt"
    dst.write_bytes((trained["run_dir"] / "checkpoints" / "last.ckpt").read_bytes())
    return dst


def _other_architecture_checkpoint(ctx: Ctx) -> list[str]:
    """The trained [64, 16, 10] net resumed on 6x6 images of 2 classes: the model is [36, 16, 2].

    (``--model.hidden_sizes`` cannot make the mismatch: Lightning's CLI replaces the --model.* settings by
    the hyperparameters saved in the checkpoint; the input size and class count come from the data.)
    """
    root = ctx.tmp / "other_data"
    make_dataset(root, n_train=24, n_test=4, size=(6, 6), mode="L", num_classes=2)
    return ["--ckpt_path", str(_trained_checkpoint(ctx)), "--data.data_dir", str(root), "--data.val_size", "4",
            "--data.batch_size", "4", "--data.eval_batch_size", "4", "--trainer.max_epochs", "5",
            "--allow_other_data", "true"]  # past the data check: the architecture check is the one under test


def _other_data_checkpoint(ctx: Ctx) -> list[str]:
    """Issue #14, point 8: a checkpoint continued on other data of the same shape (here other images)."""
    root = ctx.tmp / "same_shape_other_data"
    make_dataset(root, n_train=300, n_test=61, size=(8, 8), mode="L", num_classes=10, seed=11)
    return ["--ckpt_path", str(_trained_checkpoint(ctx)), "--data.data_dir", str(root), "--trainer.max_epochs", "5"]


def _foreign_hyperparameters_checkpoint(ctx: Ctx) -> list[str]:
    """A checkpoint whose saved model hyperparameters include one this model does not have."""
    path = _trained_checkpoint(ctx)
    ckpt = torch.load(path, weights_only=True, map_location="cpu")
    ckpt["hyper_parameters"]["num_heads"] = 8
    torch.save(ckpt, path)
    return ["--ckpt_path", str(path)]


def _runs_dir_under_a_file(ctx: Ctx) -> list[str]:
    (ctx.tmp / "a_file").write_text("not a folder")
    return ["--runs_dir", str(ctx.tmp / "a_file" / "runs")]


def _index_that_is_a_list(ctx: Ctx) -> list[str]:
    folder = ctx.tmp / "runs" / "listidx" / "checkpoints"
    folder.mkdir(parents=True)
    (folder / "index.json").write_text("[1, 2]")
    return ["--ckpt_path", "wandb:model-listidx:latest"]


# (id, the arguments after `fit --config configs/mnist.yaml <tiny data flags>`, what the line must contain)
CASES: list[tuple[str, Args, list[str]]] = [
    # model settings (ConfigError)
    ("unknown_objective", _const("--model.objective", "foo"),
     ["unknown objective 'foo'", "discriminative, symmetric, wake_sleep, hybrid"]),
    ("unknown_objective_option", _const("--model.objective_kwargs", '{"generation_wieght": 2}'),
     ["objective 'rws' has no option(s) generation_wieght", "generation_weight"]),
    ("sizes_do_not_match_data", _const("--model.sizes", "[100, 16, 10]"),
     ["model.sizes [100, 16, 10] do not match the data's input size 64", "model.hidden_sizes"]),
    ("zero_hidden_size", _const("--model.hidden_sizes", "[16, 0]"), ["positive layer sizes", "[64, 16, 0, 10]"]),
    ("negative_hidden_size", _const("--model.hidden_sizes", "[-3]"), ["positive layer sizes", "[64, -3, 10]"]),
    ("seeds_disagree", _const("--data.seed", "1"),  # Lightning refused it only once its loggers started
     ["model.seed is 0 and data.seed 1", "give them one value: --data.seed 0", "or --model.seed 1 in a fresh fit"]),
    ("lr_zero", _const("--model.lr", "0"), ["lr must be > 0, got 0"]),
    ("lr_negative", _const("--model.lr", "-0.1"), ["lr must be > 0, got -0.1"]),
    ("lr_not_a_number", _const("--model.lr", "abc"), ['Parser key "model.lr"', "float", "abc"]),
    ("negative_weight_decay", _const("--model.weight_decay", "-1"), ["weight_decay must be >= 0, got -1"]),
    ("late_term_of_replaced_options", _const("--model.objective_kwargs", "{num_samples: 7}"),  # mnist.yaml's start
     ["model.objective_start_epochs.sample_consistency_weight: 150 starts a term that model.objective_kwargs does "
      "not set", "--model.objective_start_epochs null"]),
    ("negative_objective_weight", _const("--model.objective_kwargs", "{generation_weight: -1}"),
     ["objective_kwargs.generation_weight must be a number >= 0, got -1"]),
    ("objective_weight_not_a_number", _const("--model.objective_kwargs", "{generation_weight: abc}"),
     ["objective_kwargs.generation_weight must be a number >= 0, got 'abc'"]),
    ("unknown_inference_method", _const("--model.objective", "symmetric", "--model.objective_kwargs", "{method: foo}"),
     ["model.objective_kwargs.method must be one of deterministic, mean_variance, got 'foo'"]),
    ("step_schedule_zero_step", _const("--model.lr_schedule", "step", "--model.lr_step_size", "0"),
     ["the step schedule needs model.lr_step_size >= 1 (epochs) and model.lr_gamma > 0, got 0 and 0.5"]),
    ("hidden_size_too_big_for_memory", _const("--model.hidden_sizes", "[100000000000]"),
     ["a network of sizes [64, 100000000000, 10] does not fit in memory", "use smaller model.hidden_sizes"]),
    ("sample_grid_zero_per_class", _const("--sample_grid.samples_per_class", "0"),
     ["sample_grid.samples_per_class and sample_grid.scale must be >= 1", "got 0, 2, 5"]),
    ("negative_keep_local_versions", _const("--artifacts.keep_local_versions", "-1"),
     ["artifacts.keep_local_versions must be >= 0 or null (keep all), got -1"]),
    ("seed_out_of_range", _const("--seed_everything", "99999999999"),
     ["--seed_everything 99999999999 is out of range", "0..4294967295"]),
    ("monitor_never_logged", _const("--checkpoint.monitor", "val/bogus", "--trainer.max_epochs", "1"),
     ["ModelCheckpoint(monitor='val/bogus')", "could not find the monitored key"]),
    ("val_check_interval_beyond_the_epoch", _const("--trainer.val_check_interval", "1000"),
     ["--trainer.val_check_interval 1000 is more than the", "training batches of an epoch"]),
    ("fit_from_hpc_without_one", _const("--ckpt_path", "hpc"),
     ["--ckpt_path hpc resumes Lightning's SLURM requeue checkpoint", "holds none"]),
    ("runs_dir_under_a_file", _runs_dir_under_a_file, ["cannot write the run folder", "Not a directory",
                                                       "choose a writable --runs_dir"]),
    ("artifact_index_is_a_list", _index_that_is_a_list, ["index.json' is not a JSON object (it holds a list)"]),
    ("sample_quality_zero_per_class", _const("--sample_quality.per_class", "0"),
     ["sample_quality needs per_class >= 1, marginal_images >= 0 and mc_samples >= 1; got 0, 500, 1000"]),
    ("vimco_one_sample", _const("--model.objective", "vimco", "--model.objective_kwargs", "{num_samples: 1}"),
     ["objective_kwargs.num_samples must be an integer >= 2, got 1"]),
    ("bad_fitted_proposal_init", _const("--model.fitted_proposal_init", "best"), ['"model.fitted_proposal_init"',
                                                                                  "best"]),
    # data settings and data contents (DataError)
    ("missing_data_dir", _const("--data.data_dir", "/nonexistent/folder"),
     ["data_dir '/nonexistent/folder' does not exist", "--data.data_dir"]),
    ("missing_label_column", _missing_label_column, ["missing the column 'label'", "found columns: image, target"]),
    ("non_image_column", _string_image_column, ["column 'image'", "not an image"]),
    ("empty_test_split", _empty_test_split, ["split 'test' is empty"]),
    ("batch_size_larger_than_dataset", _const("--data.batch_size", "100000"),
     ["batch_size 100000 is larger than the 199 training examples", "--data.batch_size"]),
    ("batch_size_zero", _const("--data.batch_size", "0"), ["batch_size must be a positive integer, not 0"]),
    ("batch_size_not_an_int", _const("--data.batch_size", "1.5"), ['Parser key "data.batch_size"', "int", "1.5"]),
    ("val_size_too_large", _const("--data.val_size", "70000"), ["val_size 70000 leaves no training images"]),
    ("val_size_bad_fraction", _const("--data.val_size", "1.5"), ["val_size 1.5 as a fraction must be in [0, 1)"]),
    ("bad_binarize", _const("--data.binarize", "sometimes"),
     ['Parser key "data.binarize"', "'dynamic', 'static', 'none'", "sometimes"]),
    # --ckpt_path references and files (ResumeError, CheckpointError)
    ("unknown_wandb_reference", _const("--ckpt_path", "wandb:coupled/model-doesnotexist:latest"),
     ["wandb:coupled/model-doesnotexist:latest matches nothing", "no local copy"]),
    ("malformed_wandb_reference", _const("--ckpt_path", "wandb:a/b/c/model-x"),
     ["bad checkpoint reference 'wandb:a/b/c/model-x'"]),
    ("bad_wandb_alias", _const("--ckpt_path", "wandb:model-abc:newest"), ["the alias must be latest, best or vN"]),
    ("missing_checkpoint", _const("--ckpt_path", "runs/x/last.ckpt"), ["checkpoint runs/x/last.ckpt does not exist"]),
    ("non_checkpoint_file", _const("--ckpt_path", MNIST), ["is not a PyTorch checkpoint file"]),
    ("truncated_checkpoint", _truncated_checkpoint, ["cut.ckpt is truncated or corrupted"]),
    ("other_architecture_checkpoint", _other_architecture_checkpoint,
     ["trained.ckpt was trained with sizes [64, 16, 10] but the model has [36, 16, 2]"]),
    ("checkpoint_from_other_data", _other_data_checkpoint,
     ["the --ckpt_path checkpoint was trained on other data", "--allow_other_data true to fine-tune"]),
    ("foreign_hyperparameters_checkpoint", _foreign_hyperparameters_checkpoint,
     ["trained.ckpt holds model hyperparameters this program does not accept", "num_heads"]),
    # config files and flags (jsonargparse)
    ("missing_config_file", _const("--config", "nope.yaml"), ["nope.yaml", "does not exist"]),
    ("config_not_yaml", lambda ctx: ["--config", ctx.file("notes.yaml", "model: [unclosed\n")],
     ["bad YAML in config file", "notes.yaml", "line 1"]),
    ("config_not_a_mapping", lambda ctx: ["--config", ctx.file("notes.txt", "just some notes\n")],
     ["notes.txt is not a YAML mapping of settings"]),
    ("unknown_config_key", lambda ctx: ["--config", ctx.file("typo.yaml", "model:\n  hiden_sizes: [10]\n")],
     ["model.hiden_sizes"]),
    ("unknown_flag", _const("--model.bogus", "3"), ["unrecognized arguments: --model.bogus 3"]),
    # Trainer flags (Lightning's checks, and the CPU process count)
    ("bad_precision", _const("--trainer.precision", "13"), ['Parser key "trainer.precision"', "'16-mixed'", "13"]),
    ("negative_max_epochs", _const("--trainer.max_epochs", "-5"),
     ["--trainer", "`max_epochs` must be a non-negative integer or -1", "-5"]),
    ("max_epochs_not_an_int", _const("--trainer.max_epochs", "abc"), ['Parser key "trainer.max_epochs"', "abc"]),
    ("more_gpus_than_exist",
     _const("--trainer.accelerator", "gpu", "--trainer.devices", str(torch.cuda.device_count() + 1)),
     ["gpu"]),
    ("more_cpu_processes_than_cpus", _const("--trainer.accelerator", "cpu", "--trainer.devices", "1000"),
     ["--trainer.devices 1000 asks for 1000 CPU processes"]),
    ("zero_devices", _const("--trainer.devices", "0"), ["--trainer", "devices"]),
    ("devices_not_a_number", _const("--trainer.accelerator", "cpu", "--trainer.devices", "abc"),
     ["--trainer.devices 'abc' is not a number of CPU processes", "positive integer"]),
    ("unknown_accelerator", _const("--trainer.accelerator", "nope"), ["--trainer", "accelerator='nope'"]),
    ("unknown_strategy", _const("--trainer.strategy", "nope"), ["--trainer", "strategy='nope'"]),
]


def base_args(data_dir: Path) -> list[str]:
    return ["fit", "--config", MNIST, *tiny_args(data_dir), "--trainer.max_epochs", "1"]


def assert_one_line_error(code: object, out: str, err: str, needles: list[str]) -> str:
    """Exit status 2, no traceback, and stderr is exactly one line ``coupled: error: ...`` with ``needles``."""
    assert code == 2, f"exit status {code!r}; stderr:\n{err}"
    assert "Traceback" not in out and "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{err}"
    line = lines[0]
    assert line.startswith(PREFIX), line
    for needle in needles:
        assert needle.lower() in line.lower(), f"{needle!r} not in {line!r}"
    return line


@pytest.mark.parametrize(("make_args", "needles"), [pytest.param(a, n, id=i) for i, a, n in CASES])
def test_bad_input_is_one_line_exit_2(cli_env, tiny_data, capsys, request, make_args, needles):
    args = [*base_args(tiny_data), *make_args(Ctx(tmp=cli_env, request=request))]
    capsys.readouterr()  # drop what building the case printed (datasets' parquet writer)
    with pytest.raises(SystemExit) as info:
        main(args)
    captured = capsys.readouterr()
    assert_one_line_error(info.value.code, captured.out, captured.err, needles)


def test_cases_are_many_and_distinct():
    ids = [case[0] for case in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 22


def test_bad_input_as_a_real_process(cli_env, tiny_data, decoded_cache):
    """`python -m coupled fit ... --model.objective foo`: the process's status and whole output."""
    env = subprocess_env(cli_env, decoded_cache)
    # a first load of a data set shows datasets' progress bars on stderr; they are not part of the error
    env["HF_DATASETS_DISABLE_PROGRESS_BARS"] = "1"
    proc = run_cli([*base_args(tiny_data), "--model.objective", "foo"], env=env, cwd=cli_env, timeout=120)
    line = assert_one_line_error(proc.returncode, proc.stdout, proc.stderr, ["unknown objective 'foo'"])
    assert line == (f"{PREFIX}unknown objective 'foo': choose one of discriminative, symmetric, wake_sleep, hybrid, "
                    f"rws, vimco")
    assert proc.stdout.strip() == ""


@pytest.mark.parametrize(("verb", "extra", "needles"), [
    ("test", [], ["coupled test needs trained weights", "--untrained true"]),
    ("validate", [], ["coupled validate needs trained weights"]),
    ("test", ["--ckpt_path", "best"], ["--ckpt_path best names a checkpoint of a fit in this process"]),
    ("test", ["--ckpt_path", "last"], ["--ckpt_path last names a checkpoint of a fit"]),
])
def test_evaluating_without_trained_weights_is_refused(cli_env, tiny_data, capsys, verb, extra, needles):
    with pytest.raises(SystemExit) as info:
        main([verb, "--config", MNIST, *tiny_args(tiny_data), *extra])
    captured = capsys.readouterr()
    assert_one_line_error(info.value.code, captured.out, captured.err, needles)


def test_untrained_weights_are_tested_when_asked(cli_env, tiny_data, capsys):
    main(["test", "--config", MNIST, *tiny_args(tiny_data), "--untrained", "true"])
    assert "test/acc" in capsys.readouterr().out


def test_a_seed_1_checkpoint_is_tested_without_data_seed(cli_env, tiny_data, capsys, request):
    """The data seed draws only the training order and binarization: evaluation takes the checkpoint's seed, so
    `coupled test` on a seed-1 run gives what `--data.seed 1` gives, with no seed flag (fit still refuses two)."""
    path = _trained_checkpoint(Ctx(tmp=cli_env, request=request))
    ckpt = torch.load(path, weights_only=True, map_location="cpu")
    ckpt["hyper_parameters"]["seed"] = 1
    torch.save(ckpt, path)
    printed = []
    for extra in ([], ["--data.seed", "1"]):
        capsys.readouterr()
        main(["test", "--config", MNIST, *tiny_args(tiny_data), "--ckpt_path", str(path), *extra])
        printed.append([line for line in capsys.readouterr().out.splitlines() if "test/" in line])
    assert any("test/acc" in line for line in printed[0]) and printed[0] == printed[1]


def test_a_checkpoint_from_before_late_terms_is_tested_under_a_config_with_one(cli_env, tiny_data, capsys, request):
    """A checkpoint written before objective_start_epochs existed trained without late terms. Under a config that
    starts one (mnist.yaml + sample_consistency_frozen.yaml), the config's start, naming a weight the checkpoint's
    options lack, would refuse it: it is read as the run it was, with no start."""
    path = _trained_checkpoint(Ctx(tmp=cli_env, request=request))
    ckpt = torch.load(path, weights_only=True, map_location="cpu")
    del ckpt["hyper_parameters"]["objective_start_epochs"]
    torch.save(ckpt, path)
    main(["test", "--config", MNIST, "--config", str(CONFIGS / "sample_consistency_frozen.yaml"),
          *tiny_args(tiny_data), "--ckpt_path", str(path)])
    assert "test/acc" in capsys.readouterr().out
