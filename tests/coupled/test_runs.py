"""Run ids shared with DDP children, and W&B's online/offline decision (never a prompt)."""

from __future__ import annotations

import os
import string

import pytest

from coupled.runs import (
    RUN_ID_ENV,
    RUN_ID_OWNER_ENV,
    check_run_id,
    configure_wandb_mode,
    export_run_id,
    inherited_run_id,
    new_run_id,
    wandb_api_key_configured,
)
from lightning_modules.errors import ConfigError


def test_new_run_ids_are_wandb_like_and_distinct():
    ids = {new_run_id() for _ in range(50)}
    allowed = set(string.ascii_lowercase + string.digits)
    assert len(ids) == 50 and all(len(i) == 8 and set(i) <= allowed for i in ids)


def test_run_id_goes_to_children_but_not_to_the_next_run_of_this_process(monkeypatch):
    monkeypatch.delenv(RUN_ID_ENV, raising=False)
    monkeypatch.delenv(RUN_ID_OWNER_ENV, raising=False)
    assert inherited_run_id() is None
    export_run_id("abc12345")
    assert os.environ[RUN_ID_ENV] == "abc12345"
    assert inherited_run_id() is None  # this process made it: a second main() here starts a new run
    monkeypatch.setenv(RUN_ID_OWNER_ENV, str(os.getpid() + 1))  # as a DDP child sees it
    assert inherited_run_id() == "abc12345"


def test_a_users_run_id_is_used(monkeypatch):
    monkeypatch.setenv(RUN_ID_ENV, "mine")
    monkeypatch.delenv(RUN_ID_OWNER_ENV, raising=False)
    assert inherited_run_id() == "mine"


def test_check_run_id():
    assert check_run_id("ab-c_1") == "ab-c_1"
    with pytest.raises(ConfigError):
        check_run_id("a/b")


def test_offline_without_a_key(tmp_path):
    env = {"NETRC": str(tmp_path / "none")}
    assert configure_wandb_mode(env) == "offline" and env["WANDB_MODE"] == "offline"


def test_online_with_an_api_key(tmp_path):
    env = {"NETRC": str(tmp_path / "none"), "WANDB_API_KEY": "k"}
    assert configure_wandb_mode(env) == "online"


def test_online_with_a_netrc_entry(tmp_path):
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password secretkey\n")
    netrc.chmod(0o600)
    env = {"NETRC": str(netrc)}
    assert wandb_api_key_configured(env)
    assert configure_wandb_mode(env) == "online"
    assert not wandb_api_key_configured({"NETRC": str(netrc), "WANDB_BASE_URL": "https://other.host"})


def test_users_mode_wins_and_online_without_key_is_an_error(tmp_path):
    assert configure_wandb_mode({"WANDB_MODE": "disabled", "NETRC": str(tmp_path / "n")}) == "disabled"
    assert configure_wandb_mode({"WANDB_MODE": "offline", "WANDB_API_KEY": "k"}) == "offline"
    with pytest.raises(ConfigError, match="no W&B API key"):
        configure_wandb_mode({"WANDB_MODE": "online", "NETRC": str(tmp_path / "n")})
