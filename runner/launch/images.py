"""The dlbench images through a Docker-API engine: what a build passes, the build, a run, the list.

    python -m runner image build cpu|cuda [--tag T] [--engine URL] [--build-arg K=V ...] [--no-cache]
    python -m runner image run cpu [--gpus all] [--results DIR] [--offline] [-- RUN FLAGS...]
    python -m runner image list
    python -m runner image args cpu       # the same build's arguments as podman flags (scripts/podman.sh)

`plan()` is the one place that says what a build of images/KIND/Dockerfile passes: the image's identity
(tag, git revision, version, base image) and what this machine needs (its CA for pip behind a
TLS-inspecting proxy, a local folder of wheels), the last two with the host folder they mount.
scripts/podman.sh reads the same plan, so both paths build the same layers (and share podman's cache).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from runner.errors import UserError

ROOT = Path(__file__).resolve().parents[2]
KINDS = ("cpu", "cuda")
BASE_IMAGE = "docker.io/library/debian:bookworm-slim"  # the Dockerfiles' default, fully named
TITLE = "org.opencontainers.image.title"
LABEL = "org.opencontainers.image."
STEP = re.compile(r"^step\s+(\d+)/(\d+)\s*:", re.IGNORECASE)  # Docker "Step 3/26 :", podman "STEP 3/26:"


@dataclass(frozen=True)
class BuildPlan:
    kind: str
    tag: str
    args: dict[str, str]                                  # the image's identity: on every engine
    local: dict[str, str] = field(default_factory=dict)   # what this machine needs, read from the mounts
    mounts: dict[str, str] = field(default_factory=dict)  # host path -> path in the build's RUN steps (ro)

    @property
    def dockerfile(self) -> str:
        return f"images/{self.kind}/Dockerfile"

    def build_args(self, mounting: bool = True) -> dict[str, str]:
        """Every arg where the engine mounts into a build (podman); the identity only where not (Docker)."""
        return {**self.args, **self.local} if mounting else dict(self.args)

    def podman_flags(self) -> list[str]:
        """The plan as `podman build` flags, one argv word each."""
        return ([f"--build-arg={k}={v}" for k, v in self.build_args().items()]
                + [f"--volume={host}:{inside}:ro" for host, inside in self.mounts.items()] + [f"--tag={self.tag}"])


def plan(kind: str, tag: str | None = None, extra: dict[str, str] | None = None, root: Path = ROOT,
         env: os._Environ | dict = os.environ) -> BuildPlan:
    from runner import __version__

    if kind not in KINDS or not (root / f"images/{kind}/Dockerfile").is_file():
        raise UserError(f"no image {kind!r}: choose one of {', '.join(KINDS)} (images/KIND/Dockerfile)")
    tag = tag or f"dlbench:{kind}"
    args = {"BASE_IMAGE": env.get("DLBENCH_BASE_IMAGE") or BASE_IMAGE, "IMAGE": tag,
            "REVISION": revision(root), "VERSION": __version__}
    local, mounts = {}, {}
    # pip inside the build trusts the CA this machine's pip trusts, where that is a custom one ($PIP_CERT:
    # a TLS-inspecting proxy between us and PyPI). An ordinary host sets none, and its cold build then
    # needs no mount, which podman's build API could not give it.
    host_ca = env.get("PIP_CERT")
    if host_ca and Path(host_ca).is_file():
        local["PIP_CERT"] = "/etc/ssl/certs/host-ca.crt"
        mounts[str(Path(host_ca).resolve())] = local["PIP_CERT"]
    # the CPU torch wheel lies on this disk where download.pytorch.org is unreachable; same bytes, same hash
    wheels = env.get("DLBENCH_WHEELS") or "/opt/wheels"
    if kind == "cpu" and Path(wheels).is_dir():
        local.update(PIP_FIND_LINKS="/wheels", TORCH_INDEX="")
        mounts[str(Path(wheels).resolve())] = "/wheels"
    extra = extra or {}
    return BuildPlan(kind, tag, {**args, **extra}, {k: v for k, v in local.items() if k not in extra}, mounts)


def revision(root: Path = ROOT) -> str:
    """HEAD's commit, "+dirty" when tracked files changed; "unknown" outside a git checkout."""
    def git(*words):
        return subprocess.run(["git", "-C", str(root), *words], capture_output=True, text=True, timeout=30)

    try:
        head = git("rev-parse", "HEAD")
        if head.returncode != 0:
            return "unknown"
        dirty = git("status", "--porcelain", "--untracked-files=no").stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty else "")


# ---- build -----------------------------------------------------------------------------------------

@dataclass
class BuildResult:
    ok: bool
    steps: int = 0            # the last "Step i/N" seen: i
    total: int = 0            # N
    cached: int = 0           # steps the engine took from its layer cache
    error: str | None = None  # the engine's error, one line
    seconds: float = 0.0
    hint: str | None = None   # what to try instead


def build(made, p: BuildPlan, log: Path, no_cache: bool = False, echo=print, root: Path = ROOT) -> BuildResult:
    """Build through the engine's /build (docker SDK low-level stream): "Step i/N" lines to `echo`,
    every line of the engine's output into `log`."""
    from runner.launch.engine import is_podman

    # podman: the whole plan, as scripts/podman.sh passes it, so that this build reuses its layers (podman's
    # build API mounts nothing either, so a RUN step podman.sh did not cache cannot read those files: see
    # mount_hint). Docker: the image's identity only, the Dockerfile's defaults for the rest.
    podman = is_podman(made)
    args = p.build_args(mounting=podman)
    log.parent.mkdir(parents=True, exist_ok=True)
    result, start, pending = BuildResult(ok=False), time.monotonic(), ""
    with open(log, "w") as out:
        out.write(f"# {p.dockerfile} -> {p.tag}; build args {args}\n")
        try:
            # network host: as scripts/podman.sh builds (a build here has no other network)
            stream = made.api.build(path=str(root), dockerfile=p.dockerfile, tag=p.tag, buildargs=args, rm=True,
                                    forcerm=True, nocache=no_cache, pull=False, network_mode="host", decode=True)
            for chunk in stream:
                if "error" in chunk:  # podman and Docker both answer 200, then stream the failure
                    result.error = " ".join(str(chunk["error"]).split())
                    out.write(f"ERROR: {chunk['error']}\n")
                    continue
                # podman cuts its output anywhere ("cat: " then the rest): whole lines only
                text = pending + str(chunk.get("stream") or chunk.get("status") or "")
                *lines, pending = text.split("\n")
                for line in lines:
                    _line(line, out, result, echo)
        except Exception as e:  # the request itself refused (a bad tag, an HTTP error): its message is the line
            result.error = " ".join(str(getattr(e, "explanation", None) or e).split())
            out.write(f"ERROR: {result.error}\n")
        if pending:
            _line(pending, out, result, echo)
    result.seconds = time.monotonic() - start
    result.ok = result.error is None
    if not result.ok and podman and p.mounts and "RUN" in (result.error or ""):
        result.hint = mount_hint(p)
    return result


def mount_hint(p: BuildPlan) -> str:
    return (f"podman's build API mounts no host files ({', '.join(p.mounts)}), which {', '.join(p.local)} name:"
            f" bash scripts/podman.sh build {p.kind} mounts them, and this command then reuses its layers")


def _line(line: str, out, result: BuildResult, echo) -> None:
    out.write(line + "\n")
    line = line.rstrip()
    step = STEP.match(line)
    if step:
        result.steps, result.total = int(step.group(1)), int(step.group(2))
        echo(line if len(line) <= 110 else line[:107] + "...")
    elif "Using cache" in line:  # Docker " ---> Using cache", podman "--> Using cache ID"
        result.cached += 1


def labels(made, tag: str) -> dict[str, str]:
    return made.images.get(tag).labels or {}


# ---- run ---------------------------------------------------------------------------------------------

def run(made, tag: str, argv: list[str], results: Path, gpus: str | None = None, offline: bool = False,
        stdout=sys.stdout, stderr=sys.stderr) -> int:
    """The image's entrypoint (`python -m runner ARGV`) with RESULTS at /results, as the calling user;
    its output streamed to ours; its exit code."""
    import docker

    results.mkdir(parents=True, exist_ok=True)
    try:
        made.images.get(tag)
    except docker.errors.ImageNotFound:
        raise UserError(f"image {tag} not found by the engine: python -m runner image build {_kind(tag)}") from None
    gpu = [docker.types.DeviceRequest(count=-1, capabilities=[["gpu"]])] if gpus else []
    try:
        container = made.containers.create(
            tag, command=argv or None, volumes={str(results.resolve()): {"bind": "/results", "mode": "rw"}},
            user=f"{os.getuid()}:{os.getgid()}", network_mode="none" if offline else None, device_requests=gpu)
    except docker.errors.APIError as e:
        raise UserError(f"the engine cannot create a container of {tag}: {e.explanation or e}") from None
    try:
        # attached before the start, demultiplexed: the table stays on stdout, progress and errors on stderr
        stream = made.api.attach(container.id, stdout=True, stderr=True, stream=True, logs=True, demux=True)
        try:
            container.start()
        except docker.errors.APIError as e:  # e.g. --gpus all without the NVIDIA container toolkit
            raise UserError(f"the engine cannot start {tag}: {e.explanation or e}") from None
        for out, err in stream:
            if out:
                stdout.write(out.decode(errors="replace"))
                stdout.flush()
            if err:
                stderr.write(err.decode(errors="replace"))
                stderr.flush()
        return int(container.wait()["StatusCode"])
    except KeyboardInterrupt:
        container.kill()
        raise
    finally:
        container.remove(force=True)


def _kind(tag: str) -> str:
    return tag.rsplit(":", 1)[-1] if tag.rsplit(":", 1)[-1] in KINDS else "cpu|cuda"


# ---- list --------------------------------------------------------------------------------------------

def listing(made) -> list[dict]:
    """The dlbench images the engine has: by their title label, or a tag named dlbench."""
    rows = []
    for image in made.api.images():
        found = image.get("Labels") or {}
        tags = [t for t in image.get("RepoTags") or [] if t != "<none>:<none>"]
        if not tags:  # a build's earlier image, its tag taken by a newer one: layers, not an image to run
            continue
        if not (str(found.get(TITLE, "")).startswith("dlbench") or any(_named_dlbench(t) for t in tags)):
            continue
        created = image.get("Created")
        rows.append({"tag": ", ".join(tags), "id": str(image.get("Id", "")).removeprefix("sha256:")[:12],
                     "size_gb": round(int(image.get("Size") or 0) / 1e9, 2),
                     "created": time.strftime("%Y-%m-%d %H:%M", time.localtime(created))
                     if isinstance(created, (int, float)) else str(created or ""),
                     "version": found.get(LABEL + "version", ""), "revision": found.get(LABEL + "revision", "")})
    return sorted(rows, key=lambda r: r["tag"])


def _named_dlbench(tag: str) -> bool:
    return tag.rsplit(":", 1)[0].rsplit("/", 1)[-1] == "dlbench"


def render(rows: list[dict]) -> str:
    if not rows:
        return "no dlbench images: python -m runner image build cpu"
    cols = ("tag", "id", "size_gb", "created", "version", "revision")
    table = [cols] + [tuple(str(r[c]) for c in cols) for r in rows]
    width = [max(len(row[i]) for row in table) for i in range(len(cols))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, width)).rstrip() for row in table)
