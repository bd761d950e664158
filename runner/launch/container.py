"""The container launcher: each run's child process inside an image, through a Docker-API engine.

    python -m runner run --launcher container --launcher-setting image=dlbench:cpu
    python -m runner run --launcher container --launcher-setting image=dlbench:cuda --launcher-setting gpus=all
    DOCKER_HOST=unix:///run/podman/podman.sock python -m runner run --launcher container ...   # podman

It talks to the engine with the docker SDK (Docker, or podman's Docker-compatible socket: `podman
system service`). The host's data folder is mounted read-only at /data and the output folder at
/results; the child reads a copy of the request that says so, and probes the container's own
environment (the record then says which image made it). Files are written as the calling user.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from runner.errors import UserError
from runner.launch.engine import client as engine_client
from runner.launch.launchers import CHILD, Exit, Launcher
from runner.request import RunRequest

INSIDE = {"request": "/request", "data": "/data", "results": "/results"}


@dataclass(frozen=True)
class ContainerLauncher(Launcher):
    name: ClassVar[str] = "container"
    image: str = "dlbench:cpu"
    engine: str | None = None     # the engine's URL; None: $DOCKER_HOST, else the default Docker socket
    gpus: str | None = None       # "all": pass the host's NVIDIA GPUs (the NVIDIA container toolkit)
    python: str = "python"        # the interpreter on the image's PATH
    grace_s: float = 120.0

    def _client(self):
        return engine_client(self.engine, who="the container launcher")

    def preflight(self) -> None:
        import docker

        try:
            self._client().images.get(self.image)
        except docker.errors.ImageNotFound:
            raise UserError(f"image {self.image} not found by the engine: build it (images/README.md)") from None

    def inside(self, request: RunRequest) -> RunRequest:
        """The request as the child in the container sees it: its folders, its own probe."""
        return dataclasses.replace(request, data_dir=INSIDE["data"], out_dir=INSIDE["results"], hardware=None,
                                   environment=None)

    def start(self, request_file: Path, request: RunRequest) -> Exit:
        import docker

        client = self._client()
        inner = self.inside(request).write(request_file.parent / "inside.json")
        Path(request.out_dir).mkdir(parents=True, exist_ok=True)
        volumes = {str(request_file.parent): {"bind": INSIDE["request"], "mode": "ro"},
                   str(Path(request.data_dir).resolve()): {"bind": INSIDE["data"], "mode": "ro"},
                   str(Path(request.out_dir).resolve()): {"bind": INSIDE["results"], "mode": "rw"}}
        gpus = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])] if self.gpus else []
        try:
            container = client.containers.run(
                self.image, entrypoint=[self.python, "-m", CHILD], command=[f"{INSIDE['request']}/{inner.name}"],
                volumes=volumes, device_requests=gpus, detach=True, user=f"{os.getuid()}:{os.getgid()}",
                environment={"HOME": "/tmp", "DLBENCH_CACHE_DIR": "/tmp/dlbench-cache"})
        except docker.errors.ImageNotFound:
            raise UserError(f"image {self.image} not found by the engine: build it (images/README.md)") from None

        def wait() -> int:
            for chunk in container.logs(stream=True, follow=True):  # the child's terminal lines
                sys.stderr.write(chunk.decode(errors="replace"))
            return container.wait()["StatusCode"]

        def wait_at_most(seconds: float) -> int:
            try:
                return container.wait(timeout=seconds)["StatusCode"]
            except Exception:  # still running after the grace period
                container.kill()
                return container.wait()["StatusCode"]

        try:
            return self.supervise(wait, lambda name: container.kill(signal=name), wait_at_most)
        finally:
            container.remove(force=True)
