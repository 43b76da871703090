"""`--ckpt_path` resolution: reference syntax, the local artifact index, and the one online function."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import wandb

from coupled.resume import (
    ArtifactRef,
    CheckpointError,
    LocalArtifactIndex,
    ResumeError,
    checkpoint_run_id,
    download_artifact,
    parse_ref,
    resolve_ckpt_path,
    resolve_local,
)


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("wandb:model-abc", ArtifactRef(None, None, "model-abc", "latest")),
        ("wandb:model-abc:best", ArtifactRef(None, None, "model-abc", "best")),
        ("wandb:proj/model-abc:v12", ArtifactRef(None, "proj", "model-abc", "v12")),
        ("wandb:me/proj/model-a_b-1:latest", ArtifactRef("me", "proj", "model-a_b-1", "latest")),
    ],
)
def test_parse_ref(text, ref):
    assert parse_ref(text) == ref
    assert parse_ref(text).run_id == ref.name[len("model-"):]


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("wandb:", "expected wandb:"),
        ("wandb:a/b/c/model-x", "expected wandb:"),
        ("wandb:me//model-x", "expected wandb:"),
        ("wandb:checkpoint-x", "must be model-<run id>"),
        ("wandb:model-x:newest", "latest, best or vN"),
        ("wandb:model-x:v", "latest, best or vN"),
        ("wandb:model-x:latest\n", "latest, best or vN"),
        ("wandb:model-x\n", "must be model-<run id>"),
        ("wandb:model-" + "a" * 300, "at most 64"),
    ],
)
def test_bad_refs_are_one_line_errors(text, why):
    with pytest.raises(ResumeError, match=why) as info:
        parse_ref(text)
    assert "\n" not in str(info.value)


def test_qualified_name_uses_the_default_project():
    assert parse_ref("wandb:model-x:best").qualified("coupled") == "coupled/model-x:best"
    assert parse_ref("wandb:me/p/model-x").qualified("coupled") == "me/p/model-x:latest"


def _ckpt(path: Path, run_id: str = "r1", step: int = 0) -> Path:
    torch.save({"state_dict": {"w": torch.zeros(2)}, "wandb_run_id": run_id, "global_step": step}, path)
    return path


def test_index_versions_aliases_and_pruning(tmp_path):
    folder = tmp_path / "runs" / "r1" / "checkpoints"
    folder.mkdir(parents=True)
    index = LocalArtifactIndex(folder)
    src = folder / "best.ckpt"
    for step, aliases in enumerate([["latest", "best"], ["latest"], ["latest"], ["latest", "best"], ["latest"]]):
        _ckpt(src, step=step)
        assert index.add(src, aliases, run_id="r1", project="coupled", keep=2, step=step) == step
    data = json.loads(index.path.read_text())
    assert data["aliases"] == {"latest": 4, "best": 3}
    kept = [v["version"] for v in data["versions"] if v["file"]]
    assert kept == [3, 4]  # the newest two (best and latest among them); older copies are pruned
    ref = parse_ref("wandb:model-r1:best")
    assert torch.load(resolve_local(ref, tmp_path / "runs"), weights_only=True)["global_step"] == 3
    latest = resolve_local(parse_ref("wandb:coupled/model-r1"), tmp_path / "runs")
    assert torch.load(latest, weights_only=True)["global_step"] == 4
    with pytest.raises(ResumeError, match="v1 was pruned"):
        resolve_local(parse_ref("wandb:model-r1:v1"), tmp_path / "runs")
    with pytest.raises(ResumeError, match="v9 is not in"):
        resolve_local(parse_ref("wandb:model-r1:v9"), tmp_path / "runs")
    with pytest.raises(ResumeError, match="logged to project 'coupled', not 'other'"):
        resolve_local(parse_ref("wandb:other/model-r1"), tmp_path / "runs")


def test_offline_reference_without_a_local_copy(tmp_path):
    with pytest.raises(ResumeError, match="W&B is offline and there is no local copy of model-zz"):
        resolve_ckpt_path("wandb:model-zz", runs_dir=tmp_path, online=False, default_project="coupled")


def test_plain_and_special_paths_pass_through(tmp_path):
    for value in (None, "best", "last", "s3://bucket/x.ckpt", str(tmp_path / "x.ckpt")):
        assert resolve_ckpt_path(value, runs_dir=tmp_path, online=False, default_project="coupled") == value


def test_checkpoint_run_id_loads_safely(tmp_path):
    assert checkpoint_run_id(_ckpt(tmp_path / "a.ckpt", "abc")) == "abc"

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    torch.save({"state_dict": {}, "x": Evil()}, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="evil.ckpt"):
        checkpoint_run_id(tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match="does not exist"):
        checkpoint_run_id(tmp_path / "missing.ckpt")


# ---- download_artifact against a stub of wandb.Api (no W&B server can run here) ----


class _Artifact:
    def __init__(self, files: dict[str, bytes]):
        self.files = files
        self.roots: list[str] = []

    def download(self, root: str) -> str:
        self.roots.append(root)
        for name, data in self.files.items():
            (Path(root) / name).parent.mkdir(parents=True, exist_ok=True)
            (Path(root) / name).write_bytes(data)
        return root


def _stub_api(monkeypatch, artifact=None, error: Exception | None = None) -> list:
    calls: list = []

    class Api:
        def artifact(self, name, type=None):  # noqa: A002 - wandb's signature
            calls.append((name, type))
            if error is not None:
                raise error
            return artifact

    monkeypatch.setattr(wandb, "Api", Api)
    return calls


def test_download_artifact_returns_the_checkpoint(tmp_path, monkeypatch):
    art = _Artifact({"model.ckpt": b"data"})
    calls = _stub_api(monkeypatch, art)
    path = download_artifact("me/coupled/model-r1:v3", tmp_path / "dl")
    assert calls == [("me/coupled/model-r1:v3", "model")]
    assert path == tmp_path / "dl" / "model.ckpt" and path.read_bytes() == b"data"


def test_download_artifact_not_found_is_a_resume_error(tmp_path, monkeypatch):
    _stub_api(monkeypatch, error=ValueError("artifact 'coupled/model-r1:v3' not found in project\nTraceback..."))
    with pytest.raises(ResumeError) as info:
        download_artifact("coupled/model-r1:v3", tmp_path)
    assert str(info.value) == ("wandb:coupled/model-r1:v3 matches nothing on W&B: artifact "
                               "'coupled/model-r1:v3' not found in project")


def test_download_artifact_needs_exactly_one_checkpoint(tmp_path, monkeypatch):
    _stub_api(monkeypatch, _Artifact({"a.ckpt": b"1", "b.ckpt": b"2"}))
    with pytest.raises(ResumeError, match="holds 2 .ckpt files"):
        download_artifact("coupled/model-r1:latest", tmp_path)


def test_online_resolution_downloads_into_a_folder_per_rank(tmp_path, monkeypatch):
    art = _Artifact({"model.ckpt": b"x"})
    calls = _stub_api(monkeypatch, art)
    path = resolve_ckpt_path("wandb:model-r1:best", runs_dir=tmp_path, online=True, default_project="coupled",
                             rank=1)
    assert calls == [("coupled/model-r1:best", "model")]
    assert Path(path) == tmp_path / "r1" / "downloads" / "best" / "rank1" / "model.ckpt"
