"""HFImageDataModule on tiny synthetic hub-layout datasets."""

from __future__ import annotations

import time

import datasets
import huggingface_hub.constants
import numpy as np
import pytest
import torch
from PIL import Image

import datamodules.images as images_mod
from datamodules import DataError, FashionMNISTDataModule, HFImageDataModule, MNISTDataModule
from datamodules.sampling import epoch_permutation
from tests.datamodules.helpers import flat, make_images, write_split


def dm_for(ds: dict, cache_dir: str, **kwargs) -> HFImageDataModule:
    kwargs.setdefault("val_size", 10 if len(ds["train_y"]) >= 40 else 6)
    kwargs.setdefault("batch_size", 8)
    return HFImageDataModule(name="test/tiny", data_dir=str(ds["root"]), cache_dir=cache_dir, **kwargs)


def one_line(exc: pytest.ExceptionInfo) -> str:
    msg = str(exc.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


# ----------------------------------------------------------------------------------------------------
# sizes and splits
# ----------------------------------------------------------------------------------------------------


def test_grey_metadata_and_splits(grey_ds, cache_dir):
    dm = dm_for(grey_ds, cache_dir)
    # readable right after construction (LightningCLI links read input_dim before setup)
    assert dm.input_dim == 784
    assert dm.num_classes == 10
    assert dm.image_shape == (1, 28, 28)
    assert dm.class_names == grey_ds["names"]
    assert dm.split_sizes == {"train": 50, "val": 10, "test": 20}
    dm.setup("fit")
    x, y = dm.split_tensors("train")
    assert x.dtype == torch.uint8 and x.shape == (50, 784) and y.dtype == torch.int64


def test_rgb_3class_12x12(rgb_ds, cache_dir):
    dm = dm_for(rgb_ds, cache_dir)
    assert dm.input_dim == 3 * 12 * 12
    assert dm.num_classes == 3
    assert dm.image_shape == (3, 12, 12)
    assert dm.class_names == ["class_0", "class_1", "class_2"]
    dm.setup("fit")
    # pixels are flattened channel-first (C, H, W)
    x, y = dm.split_tensors("test")
    np.testing.assert_array_equal(x.numpy(), flat(rgb_ds["test_x"]))
    np.testing.assert_array_equal(y.numpy(), rgb_ds["test_y"])
    xb, yb = next(iter(dm.train_dataloader()))
    assert xb.shape == (8, 432) and xb.dtype == torch.uint8
    out = dm.transform(xb, train=False)
    assert out.shape == (8, 432) and out.dtype == torch.float32


def test_val_is_last_val_size_training_images(grey_ds, cache_dir):
    dm = dm_for(grey_ds, cache_dir, val_size=10)
    dm.setup("fit")
    all_x = flat(grey_ds["train_x"])
    all_y = np.asarray(grey_ds["train_y"])
    xv, yv = dm.split_tensors("val")
    xt, yt = dm.split_tensors("train")
    np.testing.assert_array_equal(xv.numpy(), all_x[-10:])
    np.testing.assert_array_equal(yv.numpy(), all_y[-10:])
    np.testing.assert_array_equal(xt.numpy(), all_x[:-10])
    np.testing.assert_array_equal(yt.numpy(), all_y[:-10])
    xs, ys = dm.split_tensors("test")
    np.testing.assert_array_equal(xs.numpy(), flat(grey_ds["test_x"]))
    np.testing.assert_array_equal(ys.numpy(), grey_ds["test_y"])


def test_val_size_fraction_and_zero(grey_ds, cache_dir):
    dm = dm_for(grey_ds, cache_dir, val_size=0.25)
    assert dm.split_sizes == {"train": 45, "val": 15, "test": 20}
    dm0 = dm_for(grey_ds, cache_dir, val_size=0)
    dm0.setup("fit")
    assert dm0.split_sizes["val"] == 0
    assert list(dm0.val_dataloader()) == []


def test_presets_and_hparams(tmp_path):
    m = MNISTDataModule(data_dir=str(tmp_path), batch_size=32)
    f = FashionMNISTDataModule()
    assert m.name == "ylecun/mnist" and f.name == "zalando-datasets/fashion_mnist"
    assert m.hparams["batch_size"] == 32 and m.hparams["binarize"] == "dynamic"
    assert m.eval_batch_size >= 1024 and m.test_batch_size == 128


# ----------------------------------------------------------------------------------------------------
# loaders
# ----------------------------------------------------------------------------------------------------


def batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def test_train_loader_epoch_permutation(grey_ds, cache_dir):
    dm = dm_for(grey_ds, cache_dir, batch_size=8, binarize="none")
    dm.setup("fit")
    x_all, y_all = dm.split_tensors("train")
    loader = dm.train_dataloader()
    assert len(loader) == 7  # ceil(50 / 8)

    def served(epoch):
        dm.set_epoch(epoch)
        got = batches(loader)
        assert [len(y) for _, y in got] == [8] * 6 + [2]
        return torch.cat([x for x, _ in got]), torch.cat([y for _, y in got])

    x0, y0 = served(0)
    perm0 = epoch_permutation(50, seed=0, epoch=0)
    assert torch.equal(x0, x_all[perm0]) and torch.equal(y0, y_all[perm0])
    assert torch.equal(served(0)[0], x0)  # deterministic
    x1, _ = served(1)
    assert torch.equal(x1, x_all[epoch_permutation(50, seed=0, epoch=1)])
    assert not torch.equal(x1, x0)  # a new order each epoch
    # a different seed gives a different order; a fresh module with the same seed the same one
    dm2 = dm_for(grey_ds, cache_dir, batch_size=8, binarize="none", seed=5)
    dm2.setup("fit")
    assert not torch.equal(torch.cat([x for x, _ in dm2.train_dataloader()]), x0)
    dm3 = dm_for(grey_ds, cache_dir, batch_size=8, binarize="none")
    dm3.setup("fit")
    assert torch.equal(torch.cat([x for x, _ in dm3.train_dataloader()]), x0)


def test_drop_last(grey_ds, cache_dir):
    dm = dm_for(grey_ds, cache_dir, batch_size=8, drop_last=True)
    dm.setup("fit")
    loader = dm.train_dataloader()
    assert len(loader) == 6 and [len(y) for _, y in loader] == [8] * 6


def test_eval_loaders_in_order_and_complete(grey_ds, cache_dir):
    dm = dm_for(grey_ds, cache_dir, eval_batch_size=3, test_batch_size=3)
    dm.setup("fit")
    for split, loader in (("val", dm.val_dataloader()), ("test", dm.test_dataloader())):
        got = batches(loader)
        assert len(got) == len(loader)
        x, y = dm.split_tensors(split)
        assert torch.equal(torch.cat([b[0] for b in got]), x)
        assert torch.equal(torch.cat([b[1] for b in got]), y)


# ----------------------------------------------------------------------------------------------------
# transform / binarization
# ----------------------------------------------------------------------------------------------------


def test_dynamic_binarization_fresh_each_time_and_reproducible(grey_ds, cache_dir):
    dm = dm_for(grey_ds, cache_dir, binarize="dynamic")
    dm.setup("fit")
    x, _ = dm.split_tensors("train")
    a = dm.transform(x, train=True)
    b = dm.transform(x, train=True)
    assert a.dtype == torch.float32 and a.shape == x.shape
    assert set(a.unique().tolist()) == {0.0, 1.0}
    assert not torch.equal(a, b)  # a fresh draw each time a batch is served
    # pixel = 1 with probability x / 255: 0 and 255 are deterministic, the mean follows the grey level
    assert torch.all(a[x == 0] == 0) and torch.all(a[x == 255] == 1)
    big = x.repeat(40, 1)
    assert abs(dm.transform(big, train=True).mean().item() - big.float().mean().item() / 255) < 0.005
    # epoch 1 gives other draws; a new module replays the same draws
    dm.set_epoch(1)
    c = dm.transform(x, train=True)
    dm_again = dm_for(grey_ds, cache_dir, binarize="dynamic")
    dm_again.setup("fit")
    assert torch.equal(dm_again.transform(x, train=True), a)
    dm_again.set_epoch(1)
    assert torch.equal(dm_again.transform(x, train=True), c)
    assert not torch.equal(c, a)


def test_dynamic_draw_depends_on_the_batch_position_only(grey_ds, cache_dir, monkeypatch):
    """The CPU path draws DRAW_BLOCK batches' bytes at once; a batch's draw must not depend on which batches
    were drawn before it (a resumed run starts mid-block) nor on its size (the last batch is shorter)."""
    from datamodules.binarize import DRAW_BLOCK

    def at(dm, position, x, epoch=0):
        monkeypatch.setattr(dm, "_draw_position", lambda: (epoch, position))
        return dm.transform(x, train=True)

    dm = dm_for(grey_ds, cache_dir, binarize="dynamic", batch_size=8)
    dm.setup("fit")
    x = dm.split_tensors("train")[0][:8]
    positions = [0, 3, DRAW_BLOCK - 1, DRAW_BLOCK, DRAW_BLOCK + 2]
    in_order = {p: at(dm, p, x) for p in range(DRAW_BLOCK + 3)}
    for p in positions:  # a fresh module (no block drawn yet) jumping straight to p
        fresh = dm_for(grey_ds, cache_dir, binarize="dynamic", batch_size=8)
        fresh.setup("fit")
        assert torch.equal(at(fresh, p, x), in_order[p])
        assert torch.equal(at(fresh, p, x[:5]), in_order[p][:5])  # a shorter batch: a prefix of the slot
    assert len({tuple(in_order[p].flatten().tolist()) for p in positions}) == len(positions)
    assert not torch.equal(at(dm, 3, x, epoch=1), in_order[3])
    # wider than a training batch: a draw of its own, still a function of the position
    wide = dm.split_tensors("train")[0][:20]
    assert torch.equal(at(dm, 4, wide), at(fresh, 4, wide))
    # a block never holds more than DRAW_BLOCK_BYTES: here 3 batches a block, same draws whatever the jumps
    monkeypatch.setattr("datamodules.binarize.DRAW_BLOCK_BYTES", 3 * 8 * dm.input_dim)
    small = dm_for(grey_ds, cache_dir, binarize="dynamic", batch_size=8)
    small.setup("fit")
    seq = [at(small, p, x) for p in range(7)]
    assert small._batch_draws._block[1].shape[0] == 3
    jumped = dm_for(grey_ds, cache_dir, binarize="dynamic", batch_size=8)
    jumped.setup("fit")
    assert all(torch.equal(at(jumped, p, x), seq[p]) for p in (5, 1, 6, 3))


def test_static_binarization_is_fixed(grey_ds, cache_dir):
    dm = dm_for(grey_ds, cache_dir, binarize="static", batch_size=50, val_size=10)
    dm.setup("fit")
    x_grey, _ = dm.split_tensors("train")
    served = []
    for epoch in range(2):
        dm.set_epoch(epoch)
        ((xb, yb),) = list(dm.train_dataloader())
        perm = epoch_permutation(50, 0, epoch)
        inv = torch.argsort(perm)
        out = dm.transform(xb, train=True)[inv]  # back to dataset order
        assert set(out.unique().tolist()) == {0.0, 1.0}
        served.append(out)
    assert torch.equal(served[0], served[1])  # the same draw every epoch
    assert torch.all(served[0][x_grey == 0] == 0) and torch.all(served[0][x_grey == 255] == 1)
    # seeded: the same seed gives the same draw, another seed another one
    again = dm_for(grey_ds, cache_dir, binarize="static", batch_size=50, seed=0)
    again.setup("fit")
    assert torch.equal(again._x_train_static, dm._x_train_static)
    other = dm_for(grey_ds, cache_dir, binarize="static", batch_size=50, seed=1)
    other.setup("fit")
    assert not torch.equal(other._x_train_static, dm._x_train_static)
    # split_tensors still returns the grey images
    assert len(x_grey.unique()) > 2


def test_none_and_eval_keep_grey_levels(grey_ds, cache_dir):
    for mode in ("none", "dynamic", "static"):
        dm = dm_for(grey_ds, cache_dir, binarize=mode)
        dm.setup("fit")
        x, _ = dm.split_tensors("val")
        expected = x.float() / 255
        assert torch.equal(dm.transform(x, train=False), expected)
        xb, yb = next(iter(dm.val_dataloader()))
        out, yo = dm.on_after_batch_transfer((xb, yb), 0)  # no trainer attached: not training
        assert torch.equal(out, expected[: len(out)]) and torch.equal(yo, yb)
        assert out.min() >= 0 and out.max() <= 1
    dm = dm_for(grey_ds, cache_dir, binarize="none")
    dm.setup("fit")
    x, _ = dm.split_tensors("train")
    assert torch.equal(dm.transform(x, train=True), x.float() / 255)


# ----------------------------------------------------------------------------------------------------
# cache
# ----------------------------------------------------------------------------------------------------


def test_cache_hit_is_fast_and_does_not_decode(grey_ds, cache_dir, monkeypatch):
    first = dm_for(grey_ds, cache_dir)
    first.setup("fit")
    files = sorted(p.name for p in (__import__("pathlib").Path(cache_dir) / "hf_images").rglob("*.pt"))
    assert len(files) == 2 and files[0].startswith("test-") and files[1].startswith("train-")

    def boom(*args, **kwargs):
        raise AssertionError("decoded again despite a warm cache")

    monkeypatch.setattr(images_mod, "decode_split", boom)
    cpu = time.process_time()
    second = dm_for(grey_ds, cache_dir)
    second.setup("fit")
    assert time.process_time() - cpu < 1.0  # CPU time: robust to other jobs on a shared machine
    for split in ("train", "val", "test"):
        for a, b in zip(first.split_tensors(split), second.split_tensors(split), strict=True):
            assert torch.equal(a, b)
    # another cache folder misses the cache and must decode
    with pytest.raises(AssertionError, match="decoded again"):
        dm_for(grey_ds, cache_dir + "_other").setup("fit")


def test_cache_keyed_by_fingerprint(tmp_path, cache_dir):
    root = tmp_path / "ds"
    arrays = make_images(12, (8, 8), "L", seed=3)
    write_split(root / "train-00000-of-00001.parquet", arrays, [0, 1] * 6, mode="L", names=["a", "b"])
    write_split(root / "test-00000-of-00001.parquet", arrays[:4], [0, 1] * 2, mode="L", names=["a", "b"])
    dm = HFImageDataModule(data_dir=str(root), cache_dir=cache_dir, val_size=2, batch_size=2)
    x_old = dm.split_tensors("train")[0].clone()
    # new content at the same path: a new fingerprint, so no stale cache
    time.sleep(0.01)
    arrays2 = make_images(12, (8, 8), "L", seed=4)
    write_split(root / "train-00000-of-00001.parquet", arrays2, [0, 1] * 6, mode="L", names=["a", "b"])
    dm2 = HFImageDataModule(data_dir=str(root), cache_dir=cache_dir, val_size=2, batch_size=2)
    x_new = dm2.split_tensors("train")[0]
    assert not torch.equal(x_old, x_new)
    np.testing.assert_array_equal(x_new.numpy(), flat(arrays2)[:10])


def test_metadata_access_loads_once(grey_ds, cache_dir, monkeypatch):
    calls = []
    real = images_mod.load_split

    def counting(*args, **kwargs):
        calls.append(args[2])
        return real(*args, **kwargs)

    monkeypatch.setattr(images_mod, "load_split", counting)
    dm = dm_for(grey_ds, cache_dir)
    _ = dm.input_dim, dm.num_classes, dm.image_shape, dm.class_names
    dm.prepare_data()
    dm.setup("fit")
    dm.train_dataloader()
    dm.setup("test")
    assert calls == ["train", "test"]


def test_plain_int_labels_and_mixed_modes(tmp_path, cache_dir):
    root = tmp_path / "ints"
    grey = make_images(2, (5, 5), "L", seed=1)
    rgb = make_images(4, (5, 5), "RGB", seed=2)
    # the first images are grey but most are RGB: all are converted to RGB; labels are a plain int column
    write_split(root / "train-00000-of-00001.parquet", grey + rgb, [0, 4, 1, 2, 3, 0])
    write_split(root / "test-00000-of-00001.parquet", rgb[:2], [1, 2])
    dm = HFImageDataModule(data_dir=str(root), cache_dir=cache_dir, val_size=1, batch_size=2)
    assert dm.num_classes == 5 and dm.class_names == ["0", "1", "2", "3", "4"]
    assert dm.image_shape == (3, 5, 5)
    x, _ = dm.split_tensors("train")
    g = x[0].view(3, 5, 5)
    assert torch.equal(g[0], g[1]) and torch.equal(g[1], g[2])  # a grey image as RGB
    np.testing.assert_array_equal(g[0].numpy(), grey[0])
    np.testing.assert_array_equal(x[2].numpy(), flat([rgb[0]])[0])


@pytest.mark.parametrize("mode", ["I;16", "F", "F255", "I"])
def test_wide_grey_modes_are_scaled_to_grey_levels(tmp_path, cache_dir, mode):
    """16-bit levels, 32-bit integers and floats in [0, 1] or [0, 255] become the same 8-bit grey levels."""
    levels = make_images(3, (4, 5), "L", seed=3)
    if mode == "I;16":
        images = [Image.fromarray(a.astype(np.uint16) * 257) for a in levels]  # full 16-bit range
    elif mode == "F":
        images = [Image.fromarray(a.astype(np.float32) / 255, "F") for a in levels]
    elif mode == "F255":
        images = [Image.fromarray(a.astype(np.float32), "F") for a in levels]
    else:
        images = [Image.fromarray(a.astype(np.int32), "I") for a in levels]
    assert images[0].mode == mode.removesuffix("255")
    root = tmp_path / "wide"
    for split in ("train", "test"):
        write_split(root / f"{split}-00000-of-00001.parquet", [np.asarray(im) for im in images], [0, 1, 0],
                    mode=images[0].mode if mode != "I;16" else None)
    dm = HFImageDataModule(data_dir=str(root), cache_dir=cache_dir, val_size=1, batch_size=1)
    x, _ = dm.split_tensors("train")
    np.testing.assert_array_equal(x.numpy(), flat(levels[:2]))  # the last image is the validation split


@pytest.mark.parametrize("labels", [[0, 1000000, 0], [0, 2, 0], [-1, 0, 1]])
def test_integer_labels_that_are_not_class_ids_are_refused_in_one_line(tmp_path, cache_dir, labels):
    root = tmp_path / "sparse"
    arrays = make_images(3, (4, 4), "L", seed=0)
    for split in ("train", "test"):
        write_split(root / f"{split}-00000-of-00001.parquet", arrays, labels)
    with pytest.raises(DataError) as exc:
        _ = HFImageDataModule(data_dir=str(root), cache_dir=cache_dir, val_size=1, batch_size=1).num_classes
    assert "are not the class ids 0.." in one_line(exc) and "ClassLabel" in one_line(exc)


def test_float_images_out_of_range_are_refused_in_one_line(tmp_path, cache_dir):
    root = tmp_path / "hot"
    arrays = [np.full((4, 4), 300.0, dtype=np.float32)] * 3
    for split in ("train", "test"):
        write_split(root / f"{split}-00000-of-00001.parquet", arrays, [0, 1, 0], mode="F")
    with pytest.raises(DataError) as exc:
        HFImageDataModule(data_dir=str(root), cache_dir=cache_dir, val_size=1, batch_size=1).split_tensors("train")
    assert "PIL mode F" in one_line(exc) and "[300, 300]" in one_line(exc)


# ----------------------------------------------------------------------------------------------------
# one-line errors
# ----------------------------------------------------------------------------------------------------


def test_error_missing_column(tmp_path, cache_dir):
    root = tmp_path / "nolabel"
    arrays = make_images(4, (6, 6), "L", seed=0)
    feats = datasets.Features({"image": datasets.Image(), "target": datasets.ClassLabel(names=["a", "b"])})
    for split in ("train", "test"):
        write_split(
            root / f"{split}-00000-of-00001.parquet",
            arrays,
            None,
            mode="L",
            features=feats,
            extra={"target": [0, 1, 0, 1]},
        )
    with pytest.raises(DataError) as exc:
        HFImageDataModule(data_dir=str(root), cache_dir=cache_dir, val_size=1, batch_size=1).setup("fit")
    msg = one_line(exc)
    assert "'label'" in msg and "image, target" in msg


def test_error_non_image_column(tmp_path, cache_dir):
    root = tmp_path / "strimg"
    feats = datasets.Features(
        {"image": datasets.Value("string"), "label": datasets.ClassLabel(names=["a", "b"])}
    )
    for split in ("train", "test"):
        datasets.Dataset.from_dict({"image": ["x", "y"], "label": [0, 1]}, features=feats).to_parquet(
            str(root / f"{split}-00000-of-00001.parquet")
        )
    with pytest.raises(DataError) as exc:
        _ = HFImageDataModule(data_dir=str(root), cache_dir=cache_dir, val_size=1, batch_size=1).input_dim
    msg = one_line(exc)
    assert "'image'" in msg and "not an image" in msg


def test_error_empty_split(tmp_path, cache_dir):
    root = tmp_path / "empty"
    arrays = make_images(4, (6, 6), "L", seed=0)
    write_split(root / "train-00000-of-00001.parquet", arrays, [0, 1, 0, 1], mode="L", names=["a", "b"])
    write_split(root / "test-00000-of-00001.parquet", [], [], mode="L", names=["a", "b"])
    with pytest.raises(DataError) as exc:
        HFImageDataModule(data_dir=str(root), cache_dir=cache_dir, val_size=1, batch_size=1).setup("fit")
    msg = one_line(exc)
    assert "'test'" in msg and "empty" in msg


def test_error_missing_test_split(tmp_path, cache_dir):
    root = tmp_path / "notest"
    arrays = make_images(4, (6, 6), "L", seed=0)
    write_split(root / "train-00000-of-00001.parquet", arrays, [0, 1, 0, 1], mode="L", names=["a", "b"])
    with pytest.raises(DataError) as exc:
        HFImageDataModule(data_dir=str(root), cache_dir=cache_dir, val_size=1, batch_size=1).setup("fit")
    assert "no 'test' split" in one_line(exc)


def test_error_missing_data_dir(tmp_path, cache_dir):
    with pytest.raises(DataError) as exc:
        HFImageDataModule(data_dir=str(tmp_path / "nope"), cache_dir=cache_dir).setup("fit")
    msg = one_line(exc)
    assert str(tmp_path / "nope") in msg and "--data.data_dir" in msg


def test_error_hub_unreachable(monkeypatch, cache_dir):
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError) as exc:
        _ = HFImageDataModule(name="nobody/no_such_dataset_xyz", cache_dir=cache_dir).num_classes
    msg = one_line(exc)
    assert "'nobody/no_such_dataset_xyz'" in msg and "--data.data_dir" in msg
    assert isinstance(exc.value, ValueError)


def test_coupled_data_dir_env(grey_ds, monkeypatch, cache_dir):
    # $COUPLED_DATA_DIR/<last name component> is used before the hub
    monkeypatch.setenv("COUPLED_DATA_DIR", str(grey_ds["root"].parent))
    dm = HFImageDataModule(
        name=f"someone/{grey_ds['root'].name}", cache_dir=cache_dir, val_size=10, batch_size=8
    )
    assert dm.num_classes == 10


@pytest.mark.parametrize(
    "kwargs, needle",
    [
        ({"binarize": "sometimes"}, "binarize"),
        ({"batch_size": 0}, "batch_size"),
        ({"eval_batch_size": -1}, "eval_batch_size"),
        ({"test_batch_size": 0}, "test_batch_size must be a positive integer"),
        ({"val_size": -3}, "val_size"),
        ({"val_size": 1.5}, "val_size"),
    ],
)
def test_error_bad_options(kwargs, needle, cache_dir):
    with pytest.raises(DataError) as exc:
        HFImageDataModule(cache_dir=cache_dir, **kwargs)
    assert needle in one_line(exc)


def test_error_sizes_after_loading(grey_ds, cache_dir):
    with pytest.raises(DataError) as exc:
        dm_for(grey_ds, cache_dir, val_size=60).setup("fit")
    assert "val_size 60" in one_line(exc)
    with pytest.raises(DataError) as exc:
        dm_for(grey_ds, cache_dir, val_size=10, batch_size=70).setup("fit")
    msg = one_line(exc)
    assert "batch_size 70 is larger than the 50 training examples" in msg and "--data.batch_size" in msg


def test_state_dict_roundtrip(grey_ds, cache_dir):
    dm = dm_for(grey_ds, cache_dir, seed=3)
    assert dm.state_dict() == {"seed": 3}
    dm.load_state_dict({"seed": 3})
    with pytest.warns(UserWarning, match="seed 4"):
        dm.load_state_dict({"seed": 4})


# ----------------------------------------------------------------------------------------------------
# resumable training loader
# ----------------------------------------------------------------------------------------------------


def same_batches(got, expected) -> bool:
    return len(got) == len(expected) and all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) for a, b in zip(got, expected, strict=True)
    )


@pytest.mark.parametrize("epoch, done", [(0, 0), (0, 3), (1, 6), (2, 7), (1, 1)])
def test_train_loader_state_resumes_the_rest_of_the_epoch_then_the_next_ones(grey_ds, cache_dir, epoch, done):
    dm = dm_for(grey_ds, cache_dir, batch_size=8, binarize="none")
    dm.setup("fit")
    loader = dm.train_dataloader()
    n = len(loader)  # 7 batches: 6 of 8 and one of 2
    reference = {}
    for e in range(4):
        dm.set_epoch(e)
        reference[e] = batches(loader)
    # interrupted after `done` batches of `epoch`
    dm.set_epoch(epoch)
    it = iter(loader)
    for _ in range(done):
        next(it)
    state = loader.state_dict()
    assert state == {"epoch": epoch, "batches_done": done, "num_batches": n}
    # a fresh module and loader restored from that state: the rest of the epoch, then the following ones
    again = dm_for(grey_ds, cache_dir, batch_size=8, binarize="none")
    again.setup("fit")
    resumed = again.train_dataloader()
    resumed.load_state_dict(state)
    again.set_epoch(0)  # the restored position wins over the epoch for the first iteration only
    rest, next_epoch = (reference[epoch][done:], epoch + 1) if done < n else (reference[epoch + 1], epoch + 2)
    assert same_batches(batches(resumed), rest)
    assert len(resumed) == n  # the loader's length stays the full epoch's (what Lightning counts with)
    for e in range(next_epoch, 4):
        again.set_epoch(e)
        assert same_batches(batches(resumed), reference[e])


def test_train_loader_state_from_another_geometry_restarts_the_epoch(grey_ds, cache_dir):
    dm = dm_for(grey_ds, cache_dir, batch_size=8, binarize="none")
    dm.setup("fit")
    dm.set_epoch(2)
    reference = batches(dm.train_dataloader())
    loader = dm.train_dataloader()
    with pytest.warns(UserWarning, match="after 3 of 13 training batches of epoch 2.*starts over"):
        loader.load_state_dict({"epoch": 2, "batches_done": 3, "num_batches": 13})  # e.g. batch size 4
    assert same_batches(batches(loader), reference)


def test_eval_loaders_are_plain(grey_ds, cache_dir):
    dm = dm_for(grey_ds, cache_dir)
    dm.setup("fit")
    assert not hasattr(dm.val_dataloader(), "state_dict") and not hasattr(dm.test_dataloader(), "state_dict")
    assert hasattr(dm.train_dataloader(), "state_dict")
