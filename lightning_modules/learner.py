"""The LightningModule: one coupled pair, one pluggable objective, the paper's evaluation protocol."""

from __future__ import annotations

import inspect
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torchmetrics import MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from .errors import ConfigError
from .model import CoupledSigmoidNet, fixed_binarize
from .objectives import OBJECTIVES


class GenerativeLearner(pl.LightningModule):
    """Trains a `CoupledSigmoidNet` with an objective from `OBJECTIVES` and evaluates both directions.

    Args:
        hidden_sizes: hidden layer widths; the input size and class count come from the data
            (`input_dim`, `num_classes`, linked from the DataModule by the CLI).
        sizes: the full list [d0, d1, ..., C]; an alternative to hidden_sizes + the data's sizes.
        objective: "discriminative", "symmetric" (the paper's) or "wake_sleep".
        objective_kwargs: options of the objective, e.g. {"generation_weight": 0.5}.
        tied: share W between recognition (W) and generation (W^T); False is the untied ablation.
        eval_num_samples: K of the importance-sampled test log-likelihood.
        self_consistency_per_class: generated samples per class scored by the recognition pass.
        binarize_seed: seed of the one fixed binarization of the test set for likelihoods.
    """

    def __init__(
        self,
        hidden_sizes: list[int] | None = None,
        sizes: list[int] | None = None,
        input_dim: int | None = None,
        num_classes: int | None = None,
        objective: str = "symmetric",
        objective_kwargs: dict[str, Any] | None = None,
        tied: bool = True,
        learn_prior: bool = False,
        optimizer: Literal["adam", "adamw", "sgd"] = "adam",
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        lr_schedule: Literal["cosine", "step"] | None = None,
        lr_step_size: int = 10,
        lr_gamma: float = 0.5,
        eval_num_samples: int = 1000,
        self_consistency_per_class: int = 1000,
        binarize_seed: int = 0,
    ):
        super().__init__()
        self.save_hyperparameters()
        if objective not in OBJECTIVES:
            raise ConfigError(f"unknown objective {objective!r}: choose one of {', '.join(OBJECTIVES)}")
        if not lr > 0:
            raise ConfigError(f"lr must be > 0, got {lr}")
        if weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {weight_decay}")
        if eval_num_samples < 1 or self_consistency_per_class < 0:
            raise ConfigError("eval_num_samples must be >= 1 and self_consistency_per_class >= 0")
        self.net = CoupledSigmoidNet(self._resolve_sizes(), tied=tied, learn_prior=learn_prior)
        self.objective = OBJECTIVES[objective]
        self.objective_kwargs = dict(objective_kwargs or {})
        self._check_objective_kwargs()
        C = self.net.num_classes
        self.val_acc = MulticlassAccuracy(C, average="micro")
        self.test_acc = MulticlassAccuracy(C, average="micro")
        self.self_consistency = MulticlassAccuracy(C, average="micro")
        self.test_elbo = MeanMetric()
        self.test_log_likelihood = MeanMetric()

    def _resolve_sizes(self) -> list[int]:
        hp = self.hparams
        if hp.sizes is not None:
            sizes = list(hp.sizes)
            for name, got, want in (("input size", hp.input_dim, sizes[0] if sizes else None),
                                    ("class count", hp.num_classes, sizes[-1] if sizes else None)):
                if got is not None and want is not None and got != want:
                    raise ConfigError(
                        f"model.sizes {sizes} do not match the data's {name} {got}: "
                        f"drop model.sizes and set model.hidden_sizes instead"
                    )
        else:
            if hp.input_dim is None or hp.num_classes is None:
                raise ConfigError(
                    "the model needs its input size and class count: set model.sizes, or model.input_dim "
                    "and model.num_classes (the CLI links them from the data)"
                )
            hidden = [512, 512] if hp.hidden_sizes is None else list(hp.hidden_sizes)
            sizes = [hp.input_dim, *hidden, hp.num_classes]
        try:
            CoupledSigmoidNet._check_sizes(sizes)
        except ValueError as e:
            raise ConfigError(str(e)) from None
        return sizes

    def _check_objective_kwargs(self) -> None:
        allowed = list(inspect.signature(self.objective).parameters)[3:]
        unknown = sorted(set(self.objective_kwargs) - set(allowed))
        if unknown:
            raise ConfigError(
                f"objective {self.hparams.objective!r} has no option(s) {', '.join(unknown)}; "
                f"its options are: {', '.join(allowed) or 'none'}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.recognize(x)

    # ---- training ----
    def training_step(self, batch, batch_idx):
        x, y = batch
        out = self.objective(self.net, x, y, **self.objective_kwargs)
        self.log_dict({f"train/{k}": v for k, v in out.items()}, on_step=True, on_epoch=True,
                      batch_size=x.shape[0])
        return out

    # ---- validation: recognition accuracy on grey-level images and the objective ----
    def validation_step(self, batch, batch_idx):
        x, y = batch
        out = self.objective(self.net, x, y, **self.objective_kwargs)
        self.val_acc.update(self.net.recognize(x), y)
        self.log_dict({f"val/{k}": v for k, v in out.items()}, on_epoch=True, sync_dist=True,
                      batch_size=x.shape[0])
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    # ---- test: the evaluation protocol of METHOD.md ----
    def test_step(self, batch, batch_idx):
        x, y = batch
        self.test_acc.update(self.net.recognize(x), y)
        out = self.objective(self.net, x, y, **self.objective_kwargs)
        self.log("test/loss", out["loss"], on_epoch=True, sync_dist=True, batch_size=x.shape[0])
        xb = fixed_binarize(x, self.hparams.binarize_seed)
        g = self._generator(batch_idx)
        self.test_elbo.update(self.net.log_likelihood(xb, y, 1, generator=g))
        self.test_log_likelihood.update(self.net.log_likelihood(xb, y, self.hparams.eval_num_samples, generator=g))
        self.log("test/acc", self.test_acc, on_epoch=True)
        self.log("test/elbo", self.test_elbo, on_epoch=True)
        self.log("test/log_likelihood", self.test_log_likelihood, on_epoch=True)

    def on_test_epoch_end(self):
        n = self.hparams.self_consistency_per_class
        if n == 0:
            return
        self.self_consistency.update(*self.score_own_samples(n))
        self.log("test/self_consistency", self.self_consistency)

    @torch.no_grad()
    def score_own_samples(self, per_class: int, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's share of `per_class` ancestral samples per class, recognised: (logits, labels).

        Sample i of the global list (class i // per_class) goes to rank i % world_size, so ranks never
        duplicate a sample and the synced accuracy is over exactly C * per_class samples.
        """
        rank, world = self.global_rank, self.trainer.world_size if self._trainer else 1
        ids = torch.arange(rank, self.net.num_classes * per_class, world, device=self.device)
        labels = ids // per_class
        g = self._generator(10**6 + rank)
        logits = [self.net.recognize(self.net.sample_down(y, g)[0]) for y in labels.split(chunk)]
        return torch.cat(logits), labels

    def _generator(self, offset: int) -> torch.Generator:
        return torch.Generator(device=self.device).manual_seed(self.hparams.binarize_seed * 7919 + offset)

    # ---- optimisation ----
    def configure_optimizers(self):
        hp = self.hparams
        params = [p for p in self.parameters() if p.requires_grad]
        if hp.optimizer == "sgd":
            opt = torch.optim.SGD(params, lr=hp.lr, momentum=0.9, weight_decay=hp.weight_decay)
        else:
            cls = torch.optim.AdamW if hp.optimizer == "adamw" else torch.optim.Adam
            opt = cls(params, lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.lr_schedule is None:
            return opt
        if hp.lr_schedule == "cosine":
            epochs = self.trainer.max_epochs if self._trainer and self.trainer.max_epochs > 0 else 100
            sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, epochs))
        else:
            sched = torch.optim.lr_scheduler.StepLR(opt, step_size=hp.lr_step_size, gamma=hp.lr_gamma)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}
