"""A few hundred random values for the project's own options: each gives a run, or one `coupled: error:` line and
exit status 2, never a traceback (issue #14). The CLI parses and instantiates everything (model, data,
callbacks, Trainer) and then stops short of training: where most bad values are first seen."""

from __future__ import annotations

import random

import pytest

from coupled.cli import CoupledCLI
from coupled.exit import user_error
from tests.cli_helpers import CONFIGS, tiny_args

OPTIONS = [
    "--model.hidden_sizes", "--model.lr", "--model.weight_decay", "--model.eval_num_samples",
    "--model.fitted_proposal_steps", "--model.self_consistency_per_class", "--model.objective",
    "--model.objective_kwargs", "--model.lr_schedule", "--model.lr_step_size", "--model.lr_gamma",
    "--model.optimizer", "--model.tied", "--model.sizes", "--model.fitted_proposal_init", "--data.batch_size",
    "--data.val_size", "--data.binarize", "--data.train_size", "--data.eval_batch_size", "--data.test_batch_size",
    "--data.seed", "--sample_grid.samples_per_class", "--sample_grid.every_n_epochs", "--sample_grid.scale",
    "--sample_grid.kind", "--sample_quality.per_class", "--sample_quality.marginal_images",
    "--sample_quality.mc_samples", "--artifacts.keep_local_versions", "--seed_everything", "--trainer.max_epochs",
    "--checkpoint.save_top_k", "--test_after_fit", "--allow_other_data", "--model.rbm_pretrain_epochs",
    "--model.rbm_cd_steps", "--model.generative_delay_epochs", "--model.generative_ramp_epochs",
]
VALUES = [
    "0", "1", "-1", "3", "-7", "1000000000000", "0.5", "-0.5", "1.5", "nan", "inf", "-inf", "abc", "", "null",
    "true", "false", "[]", "[0]", "[-1]", "[8]", "[8, 4]", "[1.5]", "[64, 8, 10]", "{}", "{generation_weight: 2}",
    "{generation_weight: -1}", "{num_samples: 0}", "{num_samples: 3}", "{method: x}", "{q_weight: abc}",
    "symmetric", "rws", "vimco", "cosine", "step", "static", "none", "means", "fresh", "x" * 300,
]


@pytest.mark.parametrize("seed", range(6))
def test_random_option_values_never_give_a_traceback(cli_env, tiny_data, capsys, seed):
    rng = random.Random(seed)
    for _ in range(40):
        flags = [x for _ in range(rng.randint(1, 3)) for x in (rng.choice(OPTIONS), rng.choice(VALUES))]
        args = ["fit", "--config", str(CONFIGS / "symmetric.yaml"), *tiny_args(tiny_data), *flags,
                "--runs_dir", str(cli_env / "runs")]
        try:
            CoupledCLI(args=args, run=False)
        except SystemExit as exc:  # the parser's one line
            err = capsys.readouterr().err.strip().splitlines()
            assert exc.code == 2 and len(err) == 1 and err[0].startswith("coupled: error: "), (flags, err)
        except Exception as exc:  # noqa: BLE001 - what the entry point would print as one line, or a bug
            assert user_error(exc) is not None, f"{flags}: {type(exc).__name__}: {exc}"
        capsys.readouterr()
