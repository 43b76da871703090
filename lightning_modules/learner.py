"""The LightningModule: one coupled pair, one pluggable objective, the paper's evaluation protocol."""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from .compat import check_compatible
from .errors import CheckpointError, ConfigError
from .fitted import fit_proposal
from .lightning_private import attached_trainer, step_logs_due
from .model import CoupledSigmoidNet, fixed_binarize
from .objectives import OBJECTIVES, generative_scale, options_at, scale_generative
from .optim import make_optimizer
from .pretraining import pretrain_in_fit
from .seeds import stream_generator, stream_seed
from .self_consistency import score_samples_sharded
from .settings import check_settings
from .sizes import image_shape, resolve_sizes


def flushing_denormals() -> bool:
    """Is flush-to-zero on in this process (``GenerativeLearner.setup``)? torch has no getter: a denormal times
    one reads 0 when it is."""
    return (torch.tensor([1e-40]) * 1.0).item() == 0.0


class GenerativeLearner(pl.LightningModule):
    """Trains a `CoupledSigmoidNet` with an objective from `OBJECTIVES` and evaluates both directions.

    Args:
        hidden_sizes: hidden layer widths; the input size and class count come from the data
            (`input_dim`, `num_classes`, linked from the DataModule by the CLI).
        sizes: the full list [d0, d1, ..., C]; an alternative to hidden_sizes + the data's sizes.
        image_shape, class_names: the data's (C, H, W) and class names, linked from the DataModule by the CLI
            and kept in the checkpoint, so that samples can be drawn and shown without the data
            (``coupled sample``).
        objective: "discriminative", "symmetric" (the paper's), "wake_sleep", "hybrid" (symmetric + wake-sleep),
            "rws" (reweighted wake-sleep) or "vimco" (the K-sample bound); see `objectives.py`.
        objective_kwargs: options of the objective, e.g. {"generation_weight": 0.5}.
        objective_start_epochs: {weight option: epoch} trains that term from that epoch on (0 before it), e.g. a
            term that fine-tunes the end of a run; validation and test keep every term, so `val/loss` is one measure.
        generative_delay_epochs, generative_ramp_epochs: a schedule of the generative terms (every term of the
            training loss but -log q(y|x)): off for the first `delay` epochs, then ramped linearly to their
            weights over `ramp` epochs, per step (``train/generative_scale``); 0 and 0: no schedule.
        rbm_pretrain_epochs: > 0 first pretrains each hidden layer as an RBM, bottom-up, by this many epochs of CD-
            `rbm_cd_steps` (Adam at `lr`) on the training images, before the first step of a fresh fit (not on resume):
            DBN-style initialisation of the tied weights (``rbm.py``); an untied pair starts V as the pretrained W.
        tied: share W between recognition (W) and generation (W^T); False is the untied ablation.
        optimizer, lr, weight_decay: see :func:`make_optimizer` (fused kernels where the device has them).
        eval_num_samples: K of the importance-sampled test log-likelihood.
        fitted_proposal_steps: > 0 adds ``test/log_likelihood_fitted``: the same estimate with a recognition
            network fitted to the frozen generator by this many RWS wake-q steps (Adam at `lr`, K = 5, batch 128) on
            the training images (``fitted.py``); it measures the generator alone, ``fitted - own`` the inconsistency.
        fitted_proposal_init: that network's start: ``own`` (a copy of the coupled one, so a few steps already
            improve on the own-q estimate) or ``fresh`` (random, which needs several times the steps to catch
            up: reports/GENERATIVE.md).
        self_consistency_per_class: ancestral samples per class scored by the recognition pass
            (``val/self_consistency`` after every validation, ``test/self_consistency``); 0 switches it off.
        compile: run the objective (forward and backward) through ``torch.compile``, which fuses its
            elementwise work (measured: the compiled row of ``reports/BENCH.md``), at the price of compiling
            during the first steps. Deterministic objectives only; evaluation stays eager.
        seed: seeds the model's own randomness: the one fixed binarization of the test set, the samples
            of stochastic objectives (per step, so a resumed run draws what an uninterrupted one would)
            and the evaluation samples.
    """

    def __init__(
        self,
        hidden_sizes: list[int] | None = None,
        sizes: list[int] | None = None,
        input_dim: int | None = None,
        num_classes: int | None = None,
        image_shape: tuple[int, int, int] | None = None,
        class_names: list[str] | None = None,
        objective: str = "symmetric",
        objective_kwargs: dict[str, Any] | None = None,
        objective_start_epochs: dict[str, int] | None = None,
        generative_delay_epochs: float = 0.0,
        generative_ramp_epochs: float = 0.0,
        rbm_pretrain_epochs: int = 0,
        rbm_cd_steps: int = 1,
        tied: bool = True,
        learn_prior: bool = False,
        optimizer: Literal["adam", "adamw", "sgd"] = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_schedule: Literal["cosine", "step"] | None = None,
        lr_step_size: int = 10,
        lr_gamma: float = 0.5,
        eval_num_samples: int = 1000,
        fitted_proposal_steps: int = 0,
        fitted_proposal_init: Literal["fresh", "own"] = "own",
        self_consistency_per_class: int = 1000,
        compile: bool = False,
        seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        hp = self.hparams
        sizes = resolve_sizes(hp.sizes, hp.hidden_sizes, hp.input_dim, hp.num_classes)
        check_settings(hp, sizes)
        try:
            self.net = CoupledSigmoidNet(sizes, tied=tied, learn_prior=learn_prior)
        except (RuntimeError, MemoryError) as exc:  # the allocator's message names bytes, not the setting
            if "alloc" not in str(exc).lower() and not isinstance(exc, MemoryError):
                raise
            raise ConfigError(f"a network of sizes {sizes} does not fit in memory ({str(exc).splitlines()[0][:120]}); "
                              f"use smaller model.hidden_sizes") from None
        self.objective = OBJECTIVES[objective]
        self.objective_kwargs = dict(objective_kwargs or {})  # checked by check_settings
        self.stochastic_objective = "generator" in inspect.signature(self.objective).parameters  # draws states
        self._compiled_objective = None  # built at the first step (a compiled function does not pickle)
        self._generative_scale = 0.0 if generative_delay_epochs or generative_ramp_epochs else 1.0  # last step's
        self._epoch_sums: dict[str, Any] = {}  # {"keys": the parts' names, "sums": their running sums}
        self._epoch_count = 0
        self._sums_epoch = -1
        C = self.net.num_classes
        self.val_acc, self.test_acc, self.self_consistency, self.val_self_consistency = (
            MulticlassAccuracy(C, average="micro") for _ in range(4))
        self.test_elbo, self.test_log_likelihood, self.test_log_likelihood_fitted = (MeanMetric() for _ in range(3))
        self._proposal: CoupledSigmoidNet | None = None  # fitted at test start, not a submodule (not saved)

    @property
    def generative_schedule_done(self) -> bool:
        """Did the last training step train every term at its full weight? (callbacks/checkpoint.py)"""
        starts = (self.hparams.get("objective_start_epochs") or {}).values()
        return self._generative_scale >= 1.0 and self.current_epoch >= max(starts, default=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.recognize(x)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of the data (:func:`sizes.image_shape`)."""
        return image_shape(self.hparams.get("image_shape"), self.net.sizes[0])

    @classmethod
    def from_checkpoint(cls, checkpoint: Mapping[str, Any], path: str = "the checkpoint") -> GenerativeLearner:
        """The model a loaded checkpoint dict holds, in eval mode on the CPU. Reading the file (safely, with
        ``weights_only=True``) and resolving ``wandb:`` references is the application's: ``coupled.load``."""
        hparams = checkpoint.get("hyper_parameters")
        if not isinstance(hparams, Mapping):
            raise CheckpointError(f"checkpoint {path} has no model hyperparameters: it was not written by "
                                  f"GenerativeLearner")
        try:  # Lightning's own entries (e.g. "_instantiator" under the CLI) are not arguments
            model = cls(**{k: v for k, v in hparams.items() if not str(k).startswith("_")})
        except TypeError as e:
            raise CheckpointError(f"checkpoint {path} holds hyperparameters this program does not accept "
                                  f"({e})") from None
        check_compatible(checkpoint, model, path=path)
        model.load_state_dict(checkpoint["state_dict"])
        return model.eval()

    def _objective(self, x: torch.Tensor, y: torch.Tensor, stream: str, *position: int) -> dict:
        """The objective on a batch; a stochastic one draws from a generator seeded by (stream, rank), so a
        resumed run draws what an uninterrupted one would without any RNG state in the checkpoint."""
        kwargs = self.objective_kwargs
        if stream == "train" and self.hparams.get("objective_start_epochs"):  # terms switched on later
            kwargs = options_at(kwargs, self.hparams.objective_start_epochs, self.current_epoch)
        if self.stochastic_objective:
            kwargs = {**kwargs, "generator": self._generator(stream, *position, self.global_rank)}
        objective = self.objective
        if self.hparams.get("compile") and torch.is_grad_enabled():
            if self._compiled_objective is None:
                self._compiled_objective = torch.compile(self.objective)
            objective = self._compiled_objective
        out = objective(self.net, x, y, **kwargs)
        if self.hparams.learn_prior:  # the class prior of p(x, y) = prior(y) p(x|y), fit by maximum likelihood
            prior = -self.net.log_prior(y).mean()
            out = {**out, "loss": out["loss"] + prior, "prior": prior}
        return out

    def _inputs(self, batch: Any) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(x, y), x in the weights' dtype (64-true, 16-true, bf16-true cast the weights, not the images)."""
        x, y = batch if isinstance(batch, (tuple, list)) else (batch, None)
        return x.to(self.net.W[0].dtype), y

    def setup(self, stage: str) -> None:
        # Late in a long run Adam's moments of never-lit pixels and the saturated pixel probabilities underflow to
        # denormals, on which CPU arithmetic is many times slower (scripts/bench_denormals.py); flushing them to
        # zero changes only values below 1.2e-38. The flag is per process, so every rank and stage sets it.
        torch.set_flush_denormal(True)

    # ---- training ----
    def on_fit_start(self) -> None:
        epochs = self.hparams.get("rbm_pretrain_epochs", 0)
        if not epochs or self.trainer.ckpt_path is not None:  # a resumed fit continues from pretrained weights
            return
        pretrain_in_fit(self.trainer, self.net, self._training_images, epochs, self.hparams.get("rbm_cd_steps", 1),
                        lr=self.hparams.lr, seed=stream_seed(self.hparams.seed, "rbm_pretrain"))

    def training_step(self, batch, batch_idx):
        x, y = self._inputs(batch)
        out = self._objective(x, y, "train", self.current_epoch, batch_idx)
        delay, ramp = self.hparams.get("generative_delay_epochs", 0), self.hparams.get("generative_ramp_epochs", 0)
        if delay or ramp:  # the schedule, at this step's fraction of the run
            scale = generative_scale(self.current_epoch + batch_idx / max(1, self.trainer.num_training_batches),
                                     delay, ramp)
            out = scale_generative(out, scale, self.objective_kwargs.get("recognition_weight", 1.0))
            self._generative_scale = scale
        # Each self.log costs about a small model's step (reports/BENCH_NOTES.md, "hooks"): step values are logged only
        # when the logger writes them; epoch means are running sums (checkpointed), logged once, at the last batch.
        if step_logs_due(self.trainer):
            self.log_dict({f"train/{k}_step": v for k, v in out.items()}, on_step=True, on_epoch=False)
        n = x.shape[0]
        parts = torch.stack([v.detach() for v in out.values()])  # one in-place add a step, not two ops a part
        if self._sums_epoch != self.current_epoch or self._epoch_sums.get("keys") != tuple(out):
            # a new epoch (or a resume into one)
            self._epoch_sums = {"keys": tuple(out), "sums": torch.zeros_like(parts)}
            self._epoch_count, self._sums_epoch = 0, self.current_epoch
        self._epoch_sums["sums"].add_(parts, alpha=n)
        self._epoch_count += n
        if batch_idx + 1 >= self.trainer.num_training_batches:  # logged before any on_train_epoch_end hook
            # ranks serve equally many training examples, so the synced mean of their means is the global one
            means = self._epoch_sums["sums"] / self._epoch_count
            self.log_dict({f"train/{k}_epoch": v for k, v in zip(self._epoch_sums["keys"], means)},
                          on_step=False, on_epoch=True, sync_dist=True, batch_size=1)
        return out

    def __setattr__(self, name: str, value: Any) -> None:
        # Lightning sets bookkeeping attributes (_current_fx_name...) dozens of times a step; nn.Module.__setattr__
        # looks for a parameter, buffer or submodule of that name first. A name in __dict__ is none: straight in.
        if name in self.__dict__ and not isinstance(value, (torch.Tensor, torch.nn.Module)):
            object.__setattr__(self, name, value)
        else:
            super().__setattr__(name, value)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        sums = dict(zip(self._epoch_sums["keys"], self._epoch_sums["sums"])) if self._epoch_sums else {}
        checkpoint["train_epoch_sums"] = {"sums": sums, "count": self._epoch_count, "epoch": self._sums_epoch}
        identity = getattr(getattr(attached_trainer(self), "datamodule", None), "identity", None)
        if isinstance(identity, dict):  # the data it was trained on (checked when a fit continues from it)
            checkpoint["data_identity"] = identity

    # ---- validation: recognition accuracy on grey-level images and the objective ----
    def validation_step(self, batch, batch_idx):
        x, y = self._inputs(batch)
        out = self._objective(x, y, "val", self.current_epoch, batch_idx)
        self.val_acc.update(self.net.recognize(x), y)
        self.log_dict({f"val/{k}": v for k, v in out.items()}, on_epoch=True, sync_dist=True,
                      batch_size=x.shape[0])
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    # ---- test: the evaluation protocol of METHOD.md ----
    def on_test_start(self) -> None:
        self.__dict__["_proposal"] = None
        steps = self.hparams.get("fitted_proposal_steps", 0)
        if not steps:
            return
        train = self._training_images()
        if train is None:
            rank_zero_warn("model.fitted_proposal_steps needs a DataModule with split_tensors('train'): "
                           "test/log_likelihood_fitted is not computed")
            return
        # every rank fits the same proposal: same data, same seed
        self.__dict__["_proposal"] = fit_proposal(
            self.net, *train, steps=steps, init=self.hparams.get("fitted_proposal_init", "own"),
            lr=self.hparams.lr, seed=stream_seed(self.hparams.seed, "proposal_fit"),
        )

    def _training_images(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """The DataModule's training split, grey levels in [0, 1] on this device; None without split_tensors."""
        split = getattr(getattr(self.trainer, "datamodule", None), "split_tensors", None)
        if split is None:
            return None
        x, y = split("train")
        return x.to(self.device, self.net.W[0].dtype) / (255 if x.dtype == torch.uint8 else 1), y.to(self.device)

    def test_step(self, batch, batch_idx):
        x, y = self._inputs(batch)
        self.test_acc.update(self.net.recognize(x), y)
        out = self._objective(x, y, "test", batch_idx)
        self.log("test/loss", out["loss"], on_epoch=True, sync_dist=True, batch_size=x.shape[0])
        xb = fixed_binarize(x, self.hparams.seed)
        g = self._generator("likelihood", batch_idx, self.global_rank)
        self.test_elbo.update(self.net.log_likelihood(xb, y, 1, generator=g))
        self.test_log_likelihood.update(self.net.log_likelihood(xb, y, self.hparams.eval_num_samples, generator=g))
        self.log("test/acc", self.test_acc, on_epoch=True)
        self.log("test/elbo", self.test_elbo, on_epoch=True)
        self.log("test/log_likelihood", self.test_log_likelihood, on_epoch=True)
        if self._proposal is not None:
            g = self._generator("proposal_likelihood", batch_idx, self.global_rank)
            self.test_log_likelihood_fitted.update(
                self._proposal.log_likelihood(xb, y, self.hparams.eval_num_samples, generator=g))
            self.log("test/log_likelihood_fitted", self.test_log_likelihood_fitted, on_epoch=True)

    def predict_step(self, batch, batch_idx):
        """Class probabilities q(y|x) of the deterministic pass (batches of x, or of (x, y))."""
        x = self._inputs(batch)[0]
        return torch.softmax(self.net.recognize(x), -1)

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._log_self_consistency("val/self_consistency", self.val_self_consistency)

    def on_test_epoch_end(self) -> None:
        self._log_self_consistency("test/self_consistency", self.self_consistency)

    def _log_self_consistency(self, name: str, metric: MulticlassAccuracy) -> None:
        """Recognition accuracy on `self_consistency_per_class` ancestral samples of each class, exact under DDP:
        each rank scores its own chunks of one global list of samples, and the metric syncs their counts."""
        n = self.hparams.self_consistency_per_class
        if n == 0:
            return
        world = self.trainer.world_size if attached_trainer(self) else 1
        logits, labels = score_samples_sharded(self.net, n, self.global_rank, world, self.device, self.hparams.seed)
        if labels.numel():  # a rank may get no chunk; its empty state still joins the sync
            metric.update(logits, labels)
        self.log(name, metric)

    def _generator(self, stream: str, *position: int) -> torch.Generator:
        """A generator for one draw of a named stream (lightning_modules/seeds.py): reproducible anywhere."""
        return stream_generator(self.hparams.seed, stream, *position, device=self.device)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # one clear line, naming the file, instead of load_state_dict's size-mismatch dump
        path = getattr(attached_trainer(self), "ckpt_path", None)
        check_compatible(checkpoint, self, path=path)
        saved = checkpoint.get("train_epoch_sums") or {}
        sums = saved.get("sums") or {}
        self._epoch_sums = {}
        if sums:
            self._epoch_sums = {"keys": tuple(sums), "sums": torch.stack(list(sums.values())).to(self.device)}
        self._epoch_count = int(saved.get("count", 0))
        self._sums_epoch = saved.get("epoch", -1)

    # ---- optimisation ----
    def configure_optimizers(self):
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        opt = make_optimizer(params, hp.optimizer, hp.lr, hp.weight_decay)
        if hp.lr_schedule is None:
            return opt
        if hp.lr_schedule == "cosine":
            epochs = self.trainer.max_epochs if attached_trainer(self) and self.trainer.max_epochs > 0 else 100
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
        else:
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=hp.lr_step_size, gamma=hp.lr_gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
