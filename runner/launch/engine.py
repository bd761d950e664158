"""The container engine client (docker SDK): Docker, or podman's Docker-compatible socket.

    python -m runner run --launcher container --launcher-setting engine=unix:///tmp/podman.sock ...
    python -m runner image build|run|list [--engine URL]

One place makes the client, so every command that needs an engine says the same one line when none
answers. Engine: the URL given, else $DOCKER_HOST, else the default Docker socket.
"""

from __future__ import annotations

import os

from runner.errors import UserError


def client(engine: str | None = None, who: str = "this command"):
    """A pinged docker.DockerClient; a UserError (one line) without the SDK or without an engine."""
    try:
        import docker
    except ImportError:
        raise UserError(f"{who} needs the docker SDK: pip install 'dlbench[container]'") from None
    try:
        made = docker.DockerClient(base_url=engine) if engine else docker.from_env()
        made.ping()
    except Exception as e:
        raise UserError(f"no container engine answers at {where(engine)} ({type(e).__name__}); start Docker, or"
                        f" podman's socket (podman system service) and set DOCKER_HOST") from None
    return made


def where(engine: str | None) -> str:
    return engine or os.environ.get("DOCKER_HOST") or "the default Docker socket"


def is_podman(made) -> bool:
    """podman's compat API names itself in /version's components (Docker says "Engine")."""
    try:
        components = made.version().get("Components") or []
    except Exception:
        return False
    return any("podman" in str(c.get("Name", "")).lower() for c in components)
