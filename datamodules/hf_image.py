"""Lightning DataModule for any hub image-classification dataset with ``image`` and ``label`` columns."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pytorch_lightning as pl
import torch
from torch import Tensor
from torch.utils.data import DataLoader

from datamodules import images as _images
from datamodules.binarize import bernoulli_grey, bytes_below_255, threshold
from datamodules.errors import DataError
from datamodules.sampling import ResumableLoader, ShardBatchSampler, TensorBatchDataset, identity

BINARIZE_MODES = ("dynamic", "static", "none")
# training batches whose random bytes are drawn together on the CPU (the fixed cost of each tensor op of
# the draw is then paid once per block, see datamodules/binarize.py), fewer where 16 would pass 8 MiB
DRAW_BLOCK = 16
DRAW_BLOCK_BYTES = 2**23
SPLITS = ("train", "val", "test")


def _mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (SeedSequence hashing, so nearby inputs give unrelated streams)."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint32)
    return (int(state[0]) << 31) ^ int(state[1])


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
            likelihood costs about a second per 100 images at K = 1000 on a CPU, so smaller test batches let the
            progress bar (and a preemption) see the phase advance.
        val_size: number (int) or fraction (float in (0, 1)) of training images held out for validation:
            the *last* ``val_size`` images of the train split. 0 disables validation.
        binarize: training-batch binarization: ``dynamic`` (a fresh Bernoulli draw each time a batch is
            served, seeded from the seed, epoch, batch position and rank, so a resumed run draws what the
            uninterrupted one drew), ``static`` (one fixed seeded draw per training image), or ``none``
            (grey levels).
            Evaluation batches are always grey levels in [0, 1].
        seed: seeds the per-epoch shuffle (``seed + epoch``) and the binarization draws.
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

    Distributed training: loaders shard by ``trainer.global_rank``/``trainer.world_size`` themselves (or
    ``torch.distributed`` without a Trainer); their samplers subclass ``DistributedSampler`` so Lightning
    leaves them as they are whatever ``use_distributed_sampler`` is (``use_distributed_sampler=False`` is
    recommended all the same). Training: every rank shuffles with the same seeded permutation and takes a
    disjoint shard; validation/test: each example is visited exactly once across ranks (no padding), so
    torchmetrics-synced metrics equal the single-process ones.
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
        if binarize not in BINARIZE_MODES:
            raise DataError(
                f"binarize must be one of {', '.join(BINARIZE_MODES)}, not {binarize!r}; fix --data.binarize"
            )
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise DataError(
                f"batch_size must be a positive integer, not {batch_size!r}; fix --data.batch_size"
            )
        if eval_batch_size is not None and (
            isinstance(eval_batch_size, bool) or not isinstance(eval_batch_size, int) or eval_batch_size < 1
        ):
            raise DataError(
                f"eval_batch_size must be a positive integer or null, not {eval_batch_size!r}; "
                f"fix --data.eval_batch_size"
            )
        if isinstance(test_batch_size, bool) or not isinstance(test_batch_size, int) or test_batch_size < 1:
            raise DataError(f"test_batch_size must be a positive integer, not {test_batch_size!r}; "
                            f"fix --data.test_batch_size")
        if isinstance(val_size, bool) or not isinstance(val_size, (int, float)):
            raise DataError(f"val_size must be an int or a fraction, not {val_size!r}; fix --data.val_size")
        if isinstance(val_size, float) and val_size >= 1.0 and val_size.is_integer():
            val_size = int(val_size)  # e.g. 5000.0 from a config file: a count
        if isinstance(val_size, float) and not 0.0 <= val_size < 1.0:
            raise DataError(
                f"val_size {val_size} as a fraction must be in [0, 1) (or give a number of images); "
                f"fix --data.val_size"
            )
        if isinstance(val_size, int) and val_size < 0:
            raise DataError(f"val_size must not be negative (got {val_size}); fix --data.val_size")

        self.name = name
        self.data_dir = data_dir
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size if eval_batch_size is not None else max(1024, batch_size)
        self.test_batch_size = test_batch_size
        self.val_size = val_size
        self.binarize = binarize
        self.seed = int(seed)
        self.cache_dir = Path(cache_dir).expanduser() if cache_dir else _images.default_cache_dir()
        self.drop_last = drop_last
        if train_size is not None and (isinstance(train_size, bool) or not isinstance(train_size, int)
                                       or train_size < 1):
            raise DataError(f"train_size must be a positive integer or null, not {train_size!r}; "
                            f"fix --data.train_size")
        self.train_size = train_size

        self._loaded = False
        self._x: dict[str, Tensor] = {}
        self._y: dict[str, Tensor] = {}
        self._x_train_static: Tensor | None = None
        self._image_shape: tuple[int, int, int] | None = None
        self._num_classes: int | None = None
        self._class_names: list[str] | None = None
        self._epoch = 0  # used when no trainer is attached (see set_epoch)
        self._draws = 0  # dynamic binarizations since set_epoch, when no trainer is attached
        self._block: tuple[tuple[int, int, int, int], Tensor] | None = None  # (epoch, block, rank, width), bytes

    # ----------------------------------------------------------------------------------------------------
    # metadata (lazy: reading any of these loads the data once)
    # ----------------------------------------------------------------------------------------------------

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
    def split_sizes(self) -> dict[str, int]:
        self._ensure_loaded()
        return {split: int(self._y[split].shape[0]) for split in SPLITS}

    def split_tensors(self, split: str) -> tuple[Tensor, Tensor]:
        """Raw grey-level ``(x uint8 (N, input_dim), y int64 (N,))`` of "train", "val" or "test"."""
        if split not in SPLITS:
            raise DataError(f"split must be one of {', '.join(SPLITS)}, not {split!r}")
        self._ensure_loaded()
        return self._x[split], self._y[split]

    # ----------------------------------------------------------------------------------------------------
    # loading
    # ----------------------------------------------------------------------------------------------------

    def _describe(self) -> str:
        return f"data_dir '{self.data_dir}'" if self.data_dir is not None else f"dataset '{self.name}'"

    def _ensure_loaded(self) -> None:
        if self._loaded:
            return
        what = self._describe()
        dsd, key = _images.load_dataset_dict(self.name, self.data_dir)
        num_classes, class_names = _images.validate_dataset(dsd, what)

        train = _images.load_split(dsd["train"], key, "train", self.cache_dir, f"{what} split 'train'")
        test = _images.load_split(dsd["test"], key, "test", self.cache_dir, f"{what} split 'test'")
        if tuple(train["shape"]) != tuple(test["shape"]):
            raise DataError(
                f"{what}: train images are {_shape_str(train['shape'])} but test images are "
                f"{_shape_str(test['shape'])}; both splits need images of one size and kind"
            )
        for split, blob in (("train", train), ("test", test)):
            y = blob["y"]
            if y.numel() and (int(y.min()) < 0 or int(y.max()) >= num_classes):
                raise DataError(
                    f"{what} split '{split}' has labels outside [0, {num_classes}) "
                    f"(min {int(y.min())}, max {int(y.max())}); unlabeled splits cannot be used"
                )

        n_all = int(train["y"].shape[0])
        n_val = self._resolve_val_size(n_all)
        if n_val >= n_all:
            raise DataError(
                f"val_size {self.val_size} leaves no training images ({what} has {n_all} training images); "
                f"lower --data.val_size"
            )
        n_train = n_all - n_val
        if self.train_size is not None:  # a quick run on the first train_size training images
            n_train = min(n_train, self.train_size)
        if self.batch_size > n_train:
            raise DataError(
                f"batch_size {self.batch_size} is larger than the {n_train} training examples; "
                f"lower --data.batch_size"
            )

        self._x = {"train": train["x"][:n_train], "val": train["x"][n_all - n_val :], "test": test["x"]}
        self._y = {"train": train["y"][:n_train], "val": train["y"][n_all - n_val :], "test": test["y"]}
        self._image_shape = tuple(int(s) for s in train["shape"])  # type: ignore[assignment]
        self._num_classes = num_classes
        self._class_names = class_names
        if self.binarize == "static":
            self._x_train_static = self._static_draw(self._x["train"])
        self._loaded = True

    def _resolve_val_size(self, n_all: int) -> int:
        if isinstance(self.val_size, float):
            return int(round(self.val_size * n_all))
        return int(self.val_size)

    def _static_draw(self, x: Tensor) -> Tensor:
        """One fixed seeded Bernoulli(x / 255) draw per training pixel, stored as uint8 {0, 255}.

        Stored in the raw loader's scale, so the training loader still yields uint8 that
        :meth:`transform` maps to {0, 1}.
        """
        out = torch.empty_like(x)
        for start in range(0, x.shape[0], 8192):
            chunk_seed = _mix_seed(self.seed, start, 0x57A71C)
            out[start : start + 8192] = bernoulli_grey(x[start : start + 8192], chunk_seed).mul_(255)
        return out

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

    # ----------------------------------------------------------------------------------------------------
    # loaders
    # ----------------------------------------------------------------------------------------------------

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

    # ----------------------------------------------------------------------------------------------------
    # on-device transform
    # ----------------------------------------------------------------------------------------------------

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
        """Bernoulli(x / 255) of a training batch, a function of (seed, epoch, batch position, rank).

        On the CPU the random bytes of ``DRAW_BLOCK`` consecutive batches (fewer where that would pass
        ``DRAW_BLOCK_BYTES``) are drawn in one call and the block is kept for the batches that follow; a
        batch takes the first ``x.numel()`` bytes of its slot, so a resumed run (which recomputes the block)
        gets the very same draws. Batches wider than a slot, and batches on an accelerator, get a draw of
        their own.
        """
        epoch, position = self._draw_position()
        _, rank = self._dist_info()
        width = self.batch_size * self.input_dim
        if x.device.type != "cpu" or x.numel() > width:
            return bernoulli_grey(x, _mix_seed(self.seed, epoch, position, rank, 0xB1A5))
        per_block = max(1, min(DRAW_BLOCK, DRAW_BLOCK_BYTES // width))
        block, slot = divmod(position, per_block)
        key = (epoch, block, rank, width)
        if self._block is None or self._block[0] != key:
            u = bytes_below_255(per_block * width, _mix_seed(self.seed, epoch, block, rank, 0xB10C))
            self._block = (key, u.view(per_block, width))
        return threshold(self._block[1][slot, : x.numel()], x)

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
            gen = torch.Generator(device=x.device).manual_seed(
                _mix_seed(self.seed, epoch, position, self._dist_info()[1], 0xF10A))
            return torch.bernoulli(x.to(torch.float32).clamp(0.0, 1.0), generator=gen)
        if x.dtype == torch.uint8:
            return x.to(torch.float32).div_(255.0)
        return x.to(torch.float32)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        x, y = batch
        trainer = getattr(self, "trainer", None)
        training = bool(trainer is not None and trainer.training)
        return self.transform(x, train=training), y

    # ----------------------------------------------------------------------------------------------------
    # checkpointing
    # ----------------------------------------------------------------------------------------------------

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


def _shape_str(shape: Any) -> str:
    c, h, w = (int(s) for s in shape)
    return f"{h}x{w}x{c}"


class MNISTDataModule(HFImageDataModule):
    """MNIST (``ylecun/mnist``): 28x28 grey, 10 classes; 55000/5000/10000 with the default ``val_size``.

    Takes every argument of :class:`HFImageDataModule` but ``name`` (LightningCLI reads them through the
    ``**kwargs`` forwarded to ``super().__init__``).
    """

    def __init__(self, **kwargs: Any):
        super().__init__(name="ylecun/mnist", **kwargs)


class FashionMNISTDataModule(HFImageDataModule):
    """Fashion-MNIST (``zalando-datasets/fashion_mnist``): 28x28 grey, 10 classes; takes the same arguments."""

    def __init__(self, **kwargs: Any):
        super().__init__(name="zalando-datasets/fashion_mnist", **kwargs)
