"""Lightning DataModule for any hub image-classification dataset with ``image`` and ``label`` columns."""

from __future__ import annotations

import hashlib
import warnings
from pathlib import Path
from typing import Any, Literal

import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from datamodules import hub as _hub
from datamodules import images as _images
from datamodules.binarize import BatchDraws, static_draw
from datamodules.errors import DataError
from datamodules.options import check_options, default_eval_batch_size, split_sizes
from datamodules.sampling import ResumableLoader, ShardBatchSampler, TensorBatchDataset, identity
from lightning_modules.seeds import stream_generator

SPLITS = ("train", "val", "test")


class HFImageDataModule(pl.LightningDataModule):
    """Images of a hub image-classification dataset as flat vectors, for sigmoid networks.

    Args:
        name: hub dataset name, loaded with ``datasets.load_dataset(name)`` (its usual cache applies).
        data_dir: a local folder of the hub's parquet files (``train-*.parquet``, ``test-*.parquet``, or
            ``data/train-*.parquet``); used instead of the hub. When None, ``$COUPLED_DATA_DIR/<last name
            component>`` (e.g. ``$COUPLED_DATA_DIR/mnist``) is used if it exists.
        batch_size: training batch size per device.
        eval_batch_size: validation batch size per device (default ``max(1024, batch_size)``).
        test_batch_size: test batch size per device (default 128): the test phase's importance-sampled
            likelihood is slow per image at K = 1000, so smaller test batches let the progress bar (and a
            preemption) see the phase advance.
        val_size: number (int) or fraction (float in (0, 1)) of training images held out for validation:
            the *last* ``val_size`` images of the train split. 0 disables validation.
        binarize: training-batch binarization: ``dynamic`` (a fresh Bernoulli draw each time a batch is
            served, seeded from the seed, epoch, batch position and rank, so a resumed run draws what the
            uninterrupted one drew), ``static`` (one fixed seeded draw per training image), or ``none``
            (grey levels).
            Evaluation batches are always grey levels in [0, 1].
        seed: seeds the per-epoch shuffle and the binarization draws (named streams: lightning_modules/seeds.py).
        cache_dir: where decoded uint8 tensors are cached (default ``$COUPLED_CACHE`` or
            ``~/.cache/coupled``).
        drop_last: drop the last incomplete training batch.
        train_size: train on the first ``train_size`` training images only (quick runs); validation is
            still the last ``val_size`` images of the train split.

    Loaders yield ``(x, y)``: ``x`` uint8 ``(B, input_dim)`` (flattened C, H, W), ``y`` int64 ``(B,)``.
    :meth:`on_after_batch_transfer` (or :meth:`transform` outside a Trainer) turns ``x`` into float32 in
    [0, 1] on the batch's device, binarized for training batches.

    ``input_dim``, ``num_classes``, ``image_shape`` and ``class_names`` can be read before :meth:`setup`
    (e.g. by LightningCLI argument links); the first read loads the data (from the disk cache when warm),
    and ``setup`` reuses it.

    The training loader is a :class:`~datamodules.sampling.ResumableLoader`: a checkpoint records the epoch
    and how many of its batches were trained, and a run resumed from a mid-epoch checkpoint is served
    exactly the batches that the uninterrupted run would have trained on next.

    Distributed training: loaders shard by rank themselves, each evaluation example on exactly one rank, so
    torchmetrics-synced metrics equal the single-process ones (``datamodules/sampling.py``).
    """

    def __init__(
        self,
        name: str = "ylecun/mnist",
        data_dir: str | None = None,
        batch_size: int = 128,
        eval_batch_size: int | None = None,
        test_batch_size: int = 128,
        val_size: int | float = 5000,
        binarize: Literal["dynamic", "static", "none"] = "dynamic",
        seed: int = 0,
        cache_dir: str | None = None,
        drop_last: bool = False,
        train_size: int | None = None,
    ):
        super().__init__()
        self.save_hyperparameters()
        val_size = check_options(batch_size, eval_batch_size, test_batch_size, val_size, binarize, train_size)

        self.name = name
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size if eval_batch_size is not None else default_eval_batch_size(batch_size)
        self.test_batch_size = test_batch_size
        self.val_size = val_size
        self.binarize = binarize
        self.seed = int(seed)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else _hub.default_cache_dir()
        self.drop_last = drop_last
        self.train_size = train_size

        self._loaded = False
        self._identity: dict[str, Any] | None = None
        self._x: dict[str, Tensor] = {}
        self._y: dict[str, Tensor] = {}
        self._x_train_static: Tensor | None = None
        self._image_shape: tuple[int, int, int] | None = None
        self._num_classes: int | None = None
        self._class_names: list[str] | None = None
        self._epoch = 0  # used when no trainer is attached (see set_epoch)
        self._draws = 0  # dynamic binarizations since set_epoch, when no trainer is attached
        self._batch_draws = BatchDraws(self.seed)

    # ---- metadata (lazy: reading any of these loads the data once) ----

    @property
    def input_dim(self) -> int:
        """Pixels x channels of one image (the length of a flattened example)."""
        c, h, w = self.image_shape
        return c * h * w

    @property
    def num_classes(self) -> int:
        self._ensure_loaded()
        assert self._num_classes is not None
        return self._num_classes

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)``; C is 1 for grey and 3 for colour images."""
        self._ensure_loaded()
        assert self._image_shape is not None
        return self._image_shape

    @property
    def class_names(self) -> list[str]:
        self._ensure_loaded()
        assert self._class_names is not None
        return list(self._class_names)

    @property
    def identity(self) -> dict[str, Any]:
        """What the data is, kept in every checkpoint: a run resumed on other data is refused (coupled fit)."""
        if self._identity is None:  # once: loaded data does not change, and every checkpoint save reads this
            self._ensure_loaded()
            x = self._x["train"]
            sample = x[torch.linspace(0, len(x) - 1, min(len(x), 4096)).long()] if len(x) else x
            digest = hashlib.sha1(sample.numpy().tobytes()).hexdigest()
            self._identity = {"datamodule": f"{type(self).__module__}.{type(self).__qualname__}", "name": self.name,
                              "image_shape": list(self.image_shape), "class_names": list(self.class_names),
                              "train_images": int(len(x)), "content": digest}
        return dict(self._identity)

    @property
    def split_sizes(self) -> dict[str, int]:
        self._ensure_loaded()
        return {split: int(self._y[split].shape[0]) for split in SPLITS}

    def split_tensors(self, split: str) -> tuple[Tensor, Tensor]:
        """Raw grey-level ``(x uint8 (N, input_dim), y int64 (N,))`` of "train", "val" or "test"."""
        if split not in SPLITS:
            raise DataError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        self._ensure_loaded()
        return self._x[split], self._y[split]

    # ---- loading ----

    def _describe(self) -> str:
        return f"data_dir '{self.data_dir}'" if self.data_dir is not None else f"dataset '{self.name}'"

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        what = self._describe()
        dsd, key = _hub.load_dataset_dict(self.name, self.data_dir)
        num_classes, class_names = _hub.validate_dataset(dsd, what)

        train = _images.load_split(dsd["train"], key, "train", self.cache_dir, f"{what} split 'train'")
        test = _images.load_split(dsd["test"], key, "test", self.cache_dir, f"{what} split 'test'")
        _images.check_splits(train, test, num_classes, what)
        n_all = int(train["y"].shape[0])
        n_train, n_val = split_sizes(n_all, self.val_size, self.train_size, self.batch_size, what)

        self._x = {"train": train["x"][:n_train], "val": train["x"][n_all - n_val :], "test": test["x"]}
        self._y = {"train": train["y"][:n_train], "val": train["y"][n_all - n_val :], "test": test["y"]}
        self._image_shape = tuple(int(s) for s in train["shape"])  # type: ignore[assignment]
        self._num_classes = num_classes
        self._class_names = class_names
        if self.binarize == "static":
            self._x_train_static = static_draw(self._x["train"], self.seed)
        self._loaded = True

    def prepare_data(self) -> None:
        # runs on one process per node first: decodes and writes the disk cache that setup() then reads
        self._ensure_loaded()

    def setup(self, stage: str | None = None) -> None:
        self._ensure_loaded()
        world, _ = self._dist_info()
        n_train = int(self._y["train"].shape[0])
        per_rank = n_train // world
        if self.batch_size > per_rank:
            raise DataError(
                f"batch_size {self.batch_size} is larger than the {per_rank} training examples per process "
                f"({n_train} over {world} processes); lower --data.batch_size"
            )

    # ---- loaders ----

    def _dist_info(self) -> tuple[int, int]:
        """``(world_size, rank)`` from the attached Trainer, else torch.distributed, else ``(1, 0)``."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            return int(trainer.world_size), int(trainer.global_rank)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_world_size(), torch.distributed.get_rank()
        return 1, 0

    def _current_epoch(self) -> int:
        """The epoch being (or about to be) served: the Trainer's, else the one given to :meth:`set_epoch`."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None:
            # the fit loop's count of epochs whose batches have all run (what Lightning passes to
            # sampler.set_epoch); unlike trainer.current_epoch it is already up to date when a run resumed
            # from an end-of-epoch checkpoint creates (and prefetches from) its first iterator
            return int(trainer.fit_loop.epoch_progress.current.processed)
        return self._epoch

    def set_epoch(self, epoch: int) -> None:
        """Epoch for shuffling/binarization when no Trainer is attached (a Trainer's epoch wins).

        It also restarts the count of dynamic binarizations, so an epoch's draws can be replayed."""
        self._epoch = int(epoch)
        self._draws = 0

    def _train_progress(self) -> tuple[int, int] | None:
        """``(epoch, training batches done in it)`` from the attached Trainer (None without one).

        An epoch whose batches have all run counts as ``(next epoch, 0)``."""
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return None
        epochs = trainer.fit_loop.epoch_progress.current
        if epochs.started <= epochs.processed:  # between epochs (or after fit)
            return int(epochs.processed), 0
        done = int(trainer.fit_loop.epoch_loop.batch_progress.current.processed)
        if done >= trainer.num_training_batches:  # limit_train_batches reached: the epoch is over
            return int(epochs.processed) + 1, 0
        return int(epochs.processed), done

    def _loader(self, x: Tensor, y: Tensor, batch_size: int, train: bool) -> DataLoader:
        world, rank = self._dist_info()
        sampler = ShardBatchSampler(
            int(y.shape[0]),
            batch_size,
            shuffle=train,
            seed=self.seed,
            num_replicas=world,
            rank=rank,
            drop_last=self.drop_last if train else False,
            epoch_fn=self._current_epoch if train else None,
        )
        if train:
            return ResumableLoader(TensorBatchDataset(x, y), sampler, progress_fn=self._train_progress)
        return DataLoader(
            TensorBatchDataset(x, y), batch_size=None, sampler=sampler, collate_fn=identity, num_workers=0
        )

    def train_dataloader(self) -> DataLoader:
        self._ensure_loaded()
        x = self._x_train_static if self.binarize == "static" else self._x["train"]
        assert x is not None
        return self._loader(x, self._y["train"], self.batch_size, train=True)

    def val_dataloader(self) -> Any:
        self._ensure_loaded()
        if self._y["val"].shape[0] == 0:
            return []
        return self._loader(self._x["val"], self._y["val"], self.eval_batch_size, train=False)

    def test_dataloader(self) -> DataLoader:
        self._ensure_loaded()
        return self._loader(self._x["test"], self._y["test"], self.test_batch_size, train=False)

    def predict_dataloader(self) -> DataLoader:
        """The test images (grey levels), for ``coupled predict``."""
        return self.test_dataloader()

    # ---- on-device transform ----

    def _draw_position(self) -> tuple[int, int]:
        """``(epoch, position)`` of the batch being binarized.

        In a Trainer's fit loop the position is the number of this epoch's batches already taken (restored
        from a checkpoint, and unique per batch even with gradient accumulation); otherwise it counts the
        calls since :meth:`set_epoch`."""
        trainer = getattr(self, "trainer", None)
        if trainer is not None and trainer.training:
            return self._current_epoch(), int(trainer.fit_loop.epoch_loop.batch_progress.current.ready)
        self._draws += 1
        return self._current_epoch(), self._draws - 1

    def _dynamic_draw(self, x: Tensor) -> Tensor:
        """Bernoulli(x / 255) of a training batch, a function of (seed, epoch, batch position, rank)."""
        epoch, position = self._draw_position()
        return self._batch_draws(x, epoch, position, self._dist_info()[1], self.batch_size * self.input_dim)

    def transform(self, x: Tensor, train: bool) -> Tensor:
        """uint8 ``(B, input_dim)`` -> float32 in [0, 1] on ``x``'s device; binarized when ``train``.

        ``dynamic``: a fresh draw per call, pixel = 1 with probability ``x / 255`` (on ``x``'s device, seeded
        from seed, epoch, batch position and rank: see :meth:`_draw_position`, :meth:`_dynamic_draw`). ``static``:
        the training loader already serves the fixed draw (values {0, 255}), so this only scales. ``none``
        or ``train=False``: grey levels.
        """
        if train and self.binarize == "dynamic":
            if x.dtype == torch.uint8:
                return self._dynamic_draw(x)
            epoch, position = self._draw_position()
            gen = stream_generator(self.seed, "binarize_float", epoch, position, self._dist_info()[1], device=x.device)
            return torch.bernoulli(x.to(torch.float32).clamp(0.0, 1.0), generator=gen)
        if x.dtype == torch.uint8:
            return x.to(torch.float32).div_(255.0)
        return x.to(torch.float32)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        x, y = batch
        trainer = getattr(self, "trainer", None)
        training = bool(trainer is not None and trainer.training)
        return self.transform(x, train=training), y

    # ---- checkpointing ----

    def state_dict(self) -> dict[str, Any]:
        # the epoch and batch position come from the trainer's loops and the training loader's own state;
        # the order and the draws depend only on them and the seed
        return {"seed": self.seed}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        seed = state_dict.get("seed")
        if seed is not None and int(seed) != self.seed:
            warnings.warn(
                f"the checkpoint was trained with data seed {seed} but this run uses seed {self.seed}: "
                f"shuffling and binarization will differ from the original run",
                stacklevel=2,
            )

    def __repr__(self) -> str:
        src = self.data_dir if self.data_dir is not None else self.name
        return (
            f"{type(self).__name__}({src!r}, batch_size={self.batch_size}, val_size={self.val_size}, "
            f"binarize={self.binarize!r}, seed={self.seed})"
        )
