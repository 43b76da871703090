"""HFImageDataModule inside a (single-process, CPU) Lightning Trainer."""

from __future__ import annotations

import warnings

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import ModelCheckpoint

from datamodules import HFImageDataModule
from datamodules.sampling import epoch_permutation


class Recorder(pl.LightningModule):
    """Records what the data module serves; a single linear layer so there is something to optimise."""

    def __init__(self, input_dim: int, num_classes: int):
        super().__init__()
        self.lin = torch.nn.Linear(input_dim, num_classes)
        self.train_seen: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
        self.val_seen: list[torch.Tensor] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.train_seen.setdefault(self.current_epoch, []).append((x.clone(), y.clone()))
        return torch.nn.functional.cross_entropy(self.lin(x), y)

    def validation_step(self, batch, batch_idx):
        x, _ = batch
        self.val_seen.append(x.clone())

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def trainer(tmp_path, max_epochs: int, callbacks=()) -> pl.Trainer:
    return pl.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp_path),
        enable_checkpointing=bool(callbacks),
        callbacks=list(callbacks),
    )


def make_dm(ds: dict, cache_dir: str) -> HFImageDataModule:
    return HFImageDataModule(
        data_dir=str(ds["root"]), cache_dir=cache_dir, batch_size=16, val_size=10, binarize="dynamic", seed=3
    )


def test_trainer_binarizes_training_only_and_shuffles_per_epoch(grey_ds, cache_dir, tmp_path):
    dm = make_dm(grey_ds, cache_dir)
    model = Recorder(dm.input_dim, dm.num_classes)  # read before setup, as a LightningCLI link does
    t = trainer(tmp_path, max_epochs=2)
    t.fit(model, datamodule=dm)

    _, y_train = dm.split_tensors("train")
    x_val, _ = dm.split_tensors("val")
    draws = []
    for epoch in (0, 1):
        seen = model.train_seen[epoch]
        assert [len(y) for _, y in seen] == [16, 16, 16, 2]
        x = torch.cat([b[0] for b in seen])
        y = torch.cat([b[1] for b in seen])
        assert x.dtype == torch.float32 and x.shape == (50, 784)
        assert set(x.unique().tolist()) == {0.0, 1.0}  # training batches are binary
        assert torch.equal(y, y_train[epoch_permutation(50, 3, epoch)])  # the order follows seed + epoch
        draws.append(x)
    # validation (sanity check + 2 epochs) is grey-level
    assert len(model.val_seen) == 3
    for v in model.val_seen:
        assert torch.equal(v, x_val.float() / 255)

    # resuming at epoch 1 from a checkpoint gives the same epoch-1 order and draws as the uninterrupted run
    first = Recorder(dm.input_dim, dm.num_classes)
    t1 = trainer(tmp_path, max_epochs=1)
    dm1 = make_dm(grey_ds, cache_dir)
    t1.fit(first, datamodule=dm1)
    ckpt = tmp_path / "epoch0.ckpt"
    t1.save_checkpoint(ckpt)
    resumed = Recorder(dm.input_dim, dm.num_classes)
    dm2 = make_dm(grey_ds, cache_dir)
    trainer(tmp_path, max_epochs=2).fit(resumed, datamodule=dm2, ckpt_path=str(ckpt))
    assert list(resumed.train_seen) == [1]
    assert torch.equal(torch.cat([b[1] for b in resumed.train_seen[1]]), y_train[epoch_permutation(50, 3, 1)])
    assert torch.equal(torch.cat([b[0] for b in resumed.train_seen[1]]), draws[1])


def test_trainer_resumes_mid_epoch_with_the_same_batches_and_draws(grey_ds, cache_dir, tmp_path):
    dm = make_dm(grey_ds, cache_dir)
    full = Recorder(dm.input_dim, dm.num_classes)
    ckpts = ModelCheckpoint(dirpath=tmp_path / "ckpt", every_n_train_steps=3, save_top_k=-1)
    trainer(tmp_path, max_epochs=2, callbacks=[ckpts]).fit(full, datamodule=dm)
    # 4 batches per epoch: step 3 is batch 3 of epoch 0, step 6 batch 2 of epoch 1
    for step, epoch, done in ((3, 0, 3), (6, 1, 2)):
        ckpt = tmp_path / "ckpt" / f"epoch={epoch}-step={step}.ckpt"
        loops = torch.load(ckpt, weights_only=False)["loops"]["fit_loop"]["state_dict"]
        assert loops["combined_loader"] == [{"epoch": epoch, "batches_done": done, "num_batches": 4}]
        resumed = Recorder(dm.input_dim, dm.num_classes)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer(tmp_path / f"from{step}", max_epochs=2).fit(
                resumed, datamodule=make_dm(grey_ds, cache_dir), ckpt_path=str(ckpt)
            )
        assert not [w for w in caught if "not resumable" in str(w.message)]
        # the rest of the epoch, then the next ones: the same examples in the same order, the same draws
        expected = {e: full.train_seen[e][done if e == epoch else 0 :] for e in range(epoch, 2)}
        assert sorted(resumed.train_seen) == sorted(expected)
        for e, seen in expected.items():
            got = resumed.train_seen[e]
            assert len(got) == len(seen)
            for (x, y), (x0, y0) in zip(got, seen, strict=True):
                assert torch.equal(y, y0) and torch.equal(x, x0)

