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
    (path / "checkpoints" / "versions").mkdir()  # the index's copies: not parked
    (path / "checkpoints" / "versions" / "v0.ckpt").write_bytes(b"a copy of last.ckpt")
    index = {"versions": [{"version": 0, "file": "versions/v0.ckpt"}]}
    (path / "checkpoints" / "index.json").write_text(json.dumps(index))
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
                                         "checkpoints/index.json", "checkpoints/last.ckpt", "config.yaml",
                                         "metrics.json", "samples/test.png", "sessions/1.yaml"]
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
    shutil.rmtree(run)
    data = bytearray((parked / "checkpoints" / "best.ckpt").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (parked / "checkpoints" / "best.ckpt").write_bytes(bytes(data))
    with pytest.raises(park.ParkError, match="differs from when it was parked"):
        park.restore(parked)
    assert not run.exists()
    run = _run_folder(tmp_path / "r2", step=430)
    (run / "checkpoints" / "last.ckpt").write_bytes(b"PK\x03\x04 cut short")
    with pytest.raises(park.ParkError, match="last.ckpt"):
        park.park(run, tmp_path / "parked2")
    assert not (tmp_path / "parked2" / "r2" / park.MANIFEST).exists()
    (parked / park.MANIFEST).write_text("{}")
    with pytest.raises(park.ParkError, match="cannot be read"):
        park.restore(parked)


def test_a_fit_still_writing_is_not_parked(tmp_path, monkeypatch):
    run = _run_folder(tmp_path / "r", step=430)
    copy = park.atomic_copy

    def copy_while_the_fit_saves(source, path):
        copy(source, path)
        if path.name == "best.ckpt":
            torch.save({"state_dict": {"W": torch.zeros(2, 2)}, "global_step": 431}, run / "checkpoints" / "last.ckpt")
    monkeypatch.setattr(park, "atomic_copy", copy_while_the_fit_saves)
    with pytest.raises(park.ParkError, match="changed while it was parked"):
        park.park(run, tmp_path / "parked")
    assert not (tmp_path / "parked" / "r" / park.MANIFEST).exists()


def test_parking_removes_only_what_an_earlier_park_wrote(tmp_path):
    run = _run_folder(tmp_path / "r", step=430)
    parked = park.park(run, tmp_path / "parked")
    (parked / "notes.txt").write_text("not the park's")
    (run / "checkpoints" / "best.ckpt").unlink()
    park.park(run, tmp_path / "parked")
    assert (parked / "notes.txt").exists() and not (parked / "checkpoints" / "best.ckpt").exists()


def test_restore_never_replaces_a_run_that_went_further_nor_one_it_cannot_read(tmp_path):
    run = _run_folder(tmp_path / "r", step=430)
    parked = park.park(run, tmp_path / "parked")
    torch.save({"state_dict": {"W": torch.zeros(2, 2)}, "global_step": 860, "epoch": 2},
               run / "checkpoints" / "last.ckpt")
    with pytest.raises(park.ParkError, match="gone further"):
        park.restore(parked)
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 860
    (run / "checkpoints" / "last.ckpt").write_bytes(b"garbage")
    with pytest.raises(park.ParkError, match="unreadable: move it aside"):
        park.restore(parked)
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == b"garbage"


def test_the_command_line_says_what_was_wrong_in_one_line(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as e:
        park.main([str(tmp_path / "empty"), "--into", str(tmp_path / "parked")])
    assert "not a run folder" in str(e.value) and "\n" not in str(e.value)
    run = _run_folder(tmp_path / "r", step=7)
    park.main([str(run), "--into", str(tmp_path / "parked")])
    assert "parked" in capsys.readouterr().out
    shutil.rmtree(run)
    park.main(["--restore", str(tmp_path / "parked" / "r")])
    assert f"--ckpt_path {run.resolve() / 'checkpoints' / 'last.ckpt'}" in capsys.readouterr().out
    assert (run / "checkpoints" / "last.ckpt").is_file()
