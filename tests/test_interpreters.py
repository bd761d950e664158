"""runner.backends.interpreters ($DLBENCH_PYTHONS) and runner.machine.where.image ($DLBENCH_IMAGE_INFO):
how a multi-environment image runs each framework with its own Python, and how a record names the image.

    python -m pytest tests/test_interpreters.py -q
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from runner.errors import UserError
from runner.backends import interpreters
from runner.machine import buildinfo, probe, where


def test_unset_means_this_interpreter_for_every_framework():
    assert interpreters.python_for("jax", environ={}) == sys.executable
    assert interpreters.installed("torch", "json", environ={}) is True


def test_the_map_names_an_interpreter_per_framework():
    env = {"DLBENCH_PYTHONS": json.dumps({"jax": "/opt/venvs/tfjax/bin/python"})}
    assert interpreters.python_for("jax", env) == "/opt/venvs/tfjax/bin/python"
    assert interpreters.python_for("torch", env) == sys.executable
    assert interpreters.installed("jax", "json", env) is False  # that interpreter does not exist here


@pytest.mark.parametrize("raw", ["{not json", '["jax"]', '{"jax": 3}'])
def test_a_bad_map_is_one_clear_error(raw):
    with pytest.raises(UserError, match="DLBENCH_PYTHONS"):
        interpreters.python_for("jax", {"DLBENCH_PYTHONS": raw})


def test_another_real_interpreter_answers_for_its_framework(tmp_path, monkeypatch):
    """A second real environment (a bare venv): it has no numpy, so the framework mapped to it is not
    installed, and buildinfo runs in it (and fails there, saying so) instead of in this Python."""
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = str(venv / "bin" / "python")
    env = {"DLBENCH_PYTHONS": json.dumps({"jax": python})}
    assert interpreters.installed("jax", "numpy", env) is False
    assert interpreters.installed("jax", "json", env) is True
    monkeypatch.setenv("DLBENCH_PYTHONS", env["DLBENCH_PYTHONS"])
    procs = buildinfo.start(["jax"])
    assert procs["jax"].args[0] == python
    assert "error" in buildinfo.finish(procs)["jax"]  # `runner` is not importable from that bare venv


def test_the_image_info_names_image_locks_and_interpreters(tmp_path):
    info = {"image": "dlbench:cuda", "version": "0.1.0", "revision": "abc", "source": "s", "base_image": "b",
            "locks": {"images/cuda/torch.lock": "1" * 64}, "pythons": {"jax": "/opt/venvs/tfjax/bin/python"},
            "built_utc": "2026-11-30T00:00:00Z"}
    (tmp_path / "image.json").write_text(json.dumps(info))
    assert where.image({"DLBENCH_IMAGE_INFO": str(tmp_path / "image.json")}) == info
    assert where.image({}) is None
    with pytest.raises(where.Unknown, match="unreadable"):
        where.image({"DLBENCH_IMAGE_INFO": str(tmp_path / "missing.json")})
    env = probe.environment(environ={"DLBENCH_IMAGE_INFO": str(tmp_path / "nope.json")}, root=tmp_path,
                            dmi=tmp_path / "nope")
    assert env["image"] is None and "unreadable" in env["errors"]["image"]  # soft-fails, field by field


def test_outside_a_checkout_the_git_sha_comes_from_the_image(monkeypatch):
    from pathlib import Path

    monkeypatch.setenv("DLBENCH_GIT_SHA", "f00")
    monkeypatch.setattr(Path, "exists", lambda self: False if self.name == ".git" else Path.is_file(self) or Path.is_dir(self))
    assert probe.git_sha() == "f00"
