"""scripts/park.py: a run folder parked in the repository comes back as it was, and nothing is lost on the way."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import scripts.park as park


def _run_folder(path, step: int):
    (path / "sessions").mkdir(parents=True)
    (path / "checkpoints").mkdir()
    (path / "samples").mkdir()
    (path / "config.yaml").write_text("seed_everything: 1\n")
    (path / "sessions" / "1.yaml").write_text("seed_everything: 1\n")
    (path / "metrics.json").write_text(json.dumps({"epochs": [{"epoch": 0}]}))
    (path / "samples" / "test.png").write_bytes(b"png")
    (path / "samples" / "epoch_004.png").write_bytes(b"png")  # a training grid: not parked
    (path / "wandb").mkdir()
    for name in ("last", "best", "before_epoch150"):
        torch.save({"state_dict": {"W": torch.full((2, 2), float(step))}, "global_step": step, "epoch": 1},
                   path / "checkpoints" / f"{name}.ckpt")
    return path


def test_park_then_restore_gives_back_every_file_a_resume_reads(tmp_path):
    run = _run_folder(tmp_path / "runs" / "r", step=430)
    parked = park.park(run, tmp_path / "parked")
    manifest = json.loads((parked / park.MANIFEST).read_text())
    assert manifest["from"] == str(run.resolve()) and manifest["global_step"] == 430
    assert sorted(manifest["files"]) == ["checkpoints/before_epoch150.ckpt", "checkpoints/best.ckpt",
                                         "checkpoints/last.ckpt", "config.yaml", "metrics.json",
                                         "samples/test.png", "sessions/1.yaml"]
    kept = {name: (run / name).read_bytes() for name in manifest["files"]}
    shutil.rmtree(run)  # the session ends: the ignored folder is gone
    assert park.restore(parked) == run.resolve()
    assert {name: (run / name).read_bytes() for name in manifest["files"]} == kept
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 430


def test_parking_again_replaces_what_the_run_no_longer_has(tmp_path):
    run = _run_folder(tmp_path / "r", step=430)
    park.park(run, tmp_path / "parked")
    (run / "checkpoints" / "before_epoch150.ckpt").unlink()
    parked = park.park(run, tmp_path / "parked")
    assert not (parked / "checkpoints" / "before_epoch150.ckpt").exists()
    assert "checkpoints/before_epoch150.ckpt" not in json.loads((parked / park.MANIFEST).read_text())["files"]


def test_a_damaged_checkpoint_is_neither_parked_nor_restored(tmp_path):
    run = _run_folder(tmp_path / "r", step=430)
    parked = park.park(run, tmp_path / "parked")
    data = bytearray((parked / "checkpoints" / "best.ckpt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (parked / "checkpoints" / "best.ckpt").write_bytes(bytes(data))
    with pytest.raises(park.ParkError, match="differs from when it was parked"):
        park.restore(parked, tmp_path / "elsewhere")
    assert not (tmp_path / "elsewhere").exists()
    (run / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(park.ParkError, match="last.ckpt"):
        park.park(run, tmp_path / "parked2")
    assert not (tmp_path / "parked2").exists()


def test_restore_never_replaces_a_run_that_went_further(tmp_path):
    run = _run_folder(tmp_path / "r", step=430)
    parked = park.park(run, tmp_path / "parked")
    torch.save({"state_dict": {"W": torch.zeros(2, 2)}, "global_step": 860, "epoch": 2},
               run / "checkpoints" / "last.ckpt")
    with pytest.raises(park.ParkError, match="gone further"):
        park.restore(parked)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 860


def test_the_command_line_says_what_was_wrong_in_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as e:
        park.main([str(tmp_path / "empty"), "--into", str(tmp_path / "parked")])
    assert "not a run folder" in str(e.value) and "\n" not in str(e.value)
    park.main([str(_run_folder(tmp_path / "r", step=7)), "--into", str(tmp_path / "parked")])
    assert "parked" in capsys.readouterr().out
