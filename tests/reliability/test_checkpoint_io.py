"""Items 2 and 3: atomic checkpoint files; untrusted/broken checkpoints give one-line errors."""

from __future__ import annotations

import hashlib
import os
import pathlib
import pickle

import pytest
import torch

from coupled.checkpoint_io import (
    AtomicCheckpointIO,
    CheckpointError,
    atomic_torch_save,
    check_compatible,
    load_checkpoint_safely,
)
from lightning_modules import GenerativeLearner
from tests.reliability import _train


def sha(path) -> str:
    return hashlib.sha256(pathlib.Path(path).read_bytes()).hexdigest()


def one_line(e: BaseException) -> str:
    msg = str(e)
    assert msg and "\n" not in msg, f"not one line: {msg!r}"
    return msg


@pytest.fixture(scope="module")
def good_ckpt(tmp_path_factory, data_root):
    """A real Lightning checkpoint of 2 epochs (cosine schedule: scheduler state included)."""
    root = tmp_path_factory.mktemp("good")
    _train.pl.seed_everything(0)
    model = _train.CheckedLearner(
        sizes=_train.SIZES, lr_schedule="cosine", objective_kwargs={"generation_weight": 0.5}
    )
    trainer, _, ckpt = _train.make_trainer(str(root), 2, every_n_steps=None)
    trainer.fit(model, datamodule=_train.datamodule(data_root))
    return pathlib.Path(ckpt.last_model_path)


# ---- saving ----
def test_atomic_save_replaces_the_file_and_leaves_no_temp_files(tmp_path):
    target = tmp_path / "sub" / "last.ckpt"
    atomic_torch_save({"state_dict": {"w": torch.ones(3)}}, target)
    atomic_torch_save({"state_dict": {"w": torch.zeros(3)}}, target)
    assert torch.equal(load_checkpoint_safely(target)["state_dict"]["w"], torch.zeros(3))
    assert os.listdir(target.parent) == ["last.ckpt"]


def test_a_failing_save_leaves_the_old_file_untouched(tmp_path):
    target = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(3)}}, target)
    before = sha(target)
    with pytest.raises((AttributeError, TypeError, pickle.PicklingError)):  # a lambda does not pickle
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(3)}, "bad": lambda: 0}, target)
    assert sha(target) == before
    assert os.listdir(tmp_path) == ["last.ckpt"]


def test_the_reason_for_a_hand_written_save_lightning_does_not_fsync(tmp_path, monkeypatch):
    """Why AtomicCheckpointIO is not Lightning's TorchCheckpointIO: Lightning's save fsyncs nothing, so after a
    power cut the new name may hold an empty file; ours fsyncs the file and its folder before and after the
    rename."""
    from pytorch_lightning.plugins.io import TorchCheckpointIO

    synced: list[int] = []
    real = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: synced.append(fd) or real(fd))
    ckpt = {"state_dict": {"w": torch.ones(3)}}
    TorchCheckpointIO().save_checkpoint(ckpt, tmp_path / "lightning.ckpt")
    assert synced == []
    AtomicCheckpointIO().save_checkpoint(ckpt, tmp_path / "ours.ckpt")
    assert len(synced) >= 2  # the file, then its folder


def test_temp_files_of_killed_writers_are_removed(tmp_path):
    stale = tmp_path / ".last.ckpt.999999999.abcd.tmp"  # a pid that cannot exist
    stale.write_bytes(b"half a checkpoint")
    atomic_torch_save({"state_dict": {}}, tmp_path / "last.ckpt")
    assert sorted(os.listdir(tmp_path)) == ["last.ckpt"]


# ---- loading Lightning's own checkpoints with weights_only=True ----
def test_lightning_checkpoints_load_with_weights_only(data_root, good_ckpt):
    ckpt = load_checkpoint_safely(good_ckpt)
    for key in (
        "state_dict",
        "optimizer_states",
        "lr_schedulers",
        "loops",
        "callbacks",
        "hyper_parameters",
        "pytorch-lightning_version",
        "epoch",
        "global_step",
    ):
        assert key in ckpt, key
    assert ckpt["hyper_parameters"]["sizes"] == _train.SIZES
    assert ckpt["hyper_parameters"]["objective_kwargs"] == {"generation_weight": 0.5}
    # and Lightning's own resume path goes through the plugin: it resumes from it
    trainer, model, _, _ = _train.run(str(good_ckpt.parent.parent), 3, data_root, resume=str(good_ckpt))
    assert trainer.current_epoch == 3


def test_config_types_in_hyper_parameters_are_allowed(tmp_path):
    from jsonargparse import Namespace

    path = tmp_path / "hp.ckpt"
    torch.save(
        {
            "state_dict": {"w": torch.ones(1)},
            "hyper_parameters": {"data_dir": pathlib.Path("/data/x"), "opt": Namespace(lr=0.1)},
        },
        path,
    )
    hp = load_checkpoint_safely(path)["hyper_parameters"]
    assert hp["data_dir"] == pathlib.Path("/data/x") and hp["opt"].lr == 0.1


# ---- broken and untrusted files: one line each, naming the file ----
class NotAllowed:
    pass


def _write_cases(tmp_path, good: pathlib.Path) -> dict[str, tuple[pathlib.Path, str]]:
    raw = good.read_bytes()
    cases = {}

    def case(name, data: bytes | None, expect: str):
        p = tmp_path / f"{name}.ckpt"
        if data is not None:
            p.write_bytes(data)
        cases[name] = (p, expect)

    case("truncated_half", raw[: len(raw) // 2], "truncated")
    case("truncated_tail", raw[:-20], "truncated")
    data = bytearray(raw)
    start = raw.find(b"archive/data/0") + 200
    for i in range(start, start + 16):  # flip bytes inside tensor data: only a CRC check notices
        data[i] ^= 0xFF
    case("corrupted_tensor_bytes", bytes(data), "corrupted")
    data = bytearray(raw)
    pkl = raw.find(b"data.pkl") + 80
    for i in range(pkl, pkl + 8):
        data[i] ^= 0x5A
    case("corrupted_pickle_bytes", bytes(data), "corrupted")
    case("empty", b"", "empty")
    case("yaml_text", b"model:\n  lr: 0.1\n", "not a PyTorch checkpoint")
    case("plain_pickle", pickle.dumps({"state_dict": NotAllowed()}), "cannot be loaded safely")
    p = tmp_path / "unsafe_global.ckpt"
    torch.save({"state_dict": {}, "obj": NotAllowed()}, p)
    cases["unsafe_global"] = (p, "NotAllowed")
    p = tmp_path / "bare_state_dict.ckpt"
    torch.save({"w": torch.ones(2)}, p)
    cases["bare_state_dict"] = (p, "bare state_dict")
    p = tmp_path / "no_state_dict.ckpt"
    torch.save({"epoch": 3, "weights": [1, 2]}, p)
    cases["no_state_dict"] = (p, "no 'state_dict'")
    p = tmp_path / "a_list.ckpt"
    torch.save([torch.ones(1)], p)
    cases["a_list"] = (p, "not a Lightning checkpoint")
    cases["missing"] = (tmp_path / "does_not_exist.ckpt", "does not exist")
    cases["directory"] = (tmp_path, "is a directory")
    return cases


CASES = [
    "truncated_half",
    "truncated_tail",
    "corrupted_tensor_bytes",
    "corrupted_pickle_bytes",
    "empty",
    "yaml_text",
    "plain_pickle",
    "unsafe_global",
    "bare_state_dict",
    "no_state_dict",
    "a_list",
    "missing",
    "directory",
]


@pytest.mark.parametrize("name", CASES)
def test_bad_checkpoint_files_give_one_line_errors(tmp_path, good_ckpt, name):
    path, expect = _write_cases(tmp_path, good_ckpt)[name]
    with pytest.raises(CheckpointError) as e:
        load_checkpoint_safely(path)
    msg = one_line(e.value)
    assert str(path) in msg and expect in msg, msg


@pytest.mark.parametrize("name", ["truncated_half", "corrupted_tensor_bytes", "unsafe_global", "missing"])
def test_resuming_from_a_bad_file_fails_cleanly_and_keeps_the_good_checkpoint(tmp_path, data_root, good_ckpt, name):
    path, expect = _write_cases(tmp_path, good_ckpt)[name]
    run_dir = tmp_path / "run"
    (run_dir / "ckpt").mkdir(parents=True)
    good_copy = run_dir / "ckpt" / "last.ckpt"
    good_copy.write_bytes(good_ckpt.read_bytes())
    before = sha(good_copy)
    with pytest.raises(CheckpointError) as e:
        _train.run(str(run_dir), 3, data_root, resume=str(path))
    assert expect in one_line(e.value)
    assert sha(good_copy) == before
    assert sorted(os.listdir(run_dir / "ckpt")) == ["last.ckpt"]


# ---- the wrong architecture ----
def test_check_compatible_names_the_sizes(good_ckpt):
    ckpt = load_checkpoint_safely(good_ckpt)
    check_compatible(ckpt, GenerativeLearner(sizes=_train.SIZES))  # fits: no error
    with pytest.raises(CheckpointError) as e:
        check_compatible(ckpt, GenerativeLearner(sizes=[16, 4, 3]), path=good_ckpt)
    assert one_line(e.value) == (
        f"checkpoint {good_ckpt} was trained with sizes [16, 8, 3] but the model has [16, 4, 3]"
    )
    with pytest.raises(CheckpointError) as e:
        check_compatible(ckpt, GenerativeLearner(sizes=_train.SIZES, tied=False))
    assert "tied=True but the model has tied=False" in one_line(e.value)
    with pytest.raises(CheckpointError) as e:
        check_compatible(ckpt, GenerativeLearner(sizes=[16, 8, 5, 3]))
    assert "[16, 8, 3] but the model has [16, 8, 5, 3]" in one_line(e.value)


def test_resuming_a_different_architecture_fails_in_one_line(tmp_path, data_root, good_ckpt):
    # GenerativeLearner.on_load_checkpoint calls check_compatible
    _train.pl.seed_everything(0)
    model = _train.CheckedLearner(sizes=[16, 4, 3])
    trainer, _, _ = _train.make_trainer(str(tmp_path), 3)
    with pytest.raises(CheckpointError) as e:
        trainer.fit(model, datamodule=_train.datamodule(data_root), ckpt_path=str(good_ckpt))
    assert "was trained with sizes [16, 8, 3] but the model has [16, 4, 3]" in one_line(e.value)


def test_a_full_disk_is_one_line_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    """Issue #14, point 3: ENOSPC while writing a checkpoint was a traceback."""
    import errno

    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.ones(2)}}, path)

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(CheckpointError, match=r"could not write checkpoint .*last.ckpt \(No space left on device\); "
                                              r"the previous checkpoint there is kept"):
        AtomicCheckpointIO().save_checkpoint({"state_dict": {"w": torch.zeros(2)}}, path)
    monkeypatch.undo()
    assert torch.equal(load_checkpoint_safely(path)["state_dict"]["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.ckpt"]  # no temporary file left
