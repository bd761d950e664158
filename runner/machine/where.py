"""Where this process runs: OS, container (and the dlbench image), notebook, batch scheduler, cloud, Apple chip.

    python -m runner probe          # the `environment` part of the probe
    python -m runner run            # the record's `environment`; --platform detection (runner.machine.platforms)

Every detector reads only what it is given (an environ mapping, a filesystem root, a DMI folder), so
tests hand it a fake machine. Detectors return None for "not here"; a detector that cannot read what
it needs raises, and the caller records the reason (runner.machine.probe's soft-fail collector).
"""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path("/")
DMI = Path("/sys/class/dmi/id")

# Only these variables are copied into the record: an allowlist, so that tokens the platforms also
# set (KAGGLE_DATA_PROXY_TOKEN, KAGGLE_USER_SECRETS_TOKEN, JUPYTERHUB_API_TOKEN) never leak.
NOTEBOOK_VARS = {
    "colab": ("COLAB_RELEASE_TAG", "COLAB_GPU", "COLAB_TPU_ADDR", "COLAB_JUPYTER_IP"),
    "kaggle": ("KAGGLE_KERNEL_RUN_TYPE", "KAGGLE_URL_BASE", "KAGGLE_DATA_PROXY_PROJECT",
               "KAGGLE_DATA_PROXY_URL", "KAGGLE_KERNEL_INTEGRATIONS"),
    "jupyterhub": ("JUPYTERHUB_USER", "JUPYTERHUB_SERVER_NAME", "JUPYTERHUB_BASE_URL"),
    "jupyter": ("JPY_SESSION_NAME", "JPY_PARENT_PID"),  # set by Jupyter for its kernels' processes
}
_SECRET = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|CREDENTIAL", re.I)

# scheduler field -> Slurm variables, first one set wins (older Slurm spells some differently)
SLURM_VARS = {
    "job_id": ("SLURM_JOB_ID", "SLURM_JOBID"),
    "array_job_id": ("SLURM_ARRAY_JOB_ID",),
    "array_task_id": ("SLURM_ARRAY_TASK_ID",),
    "partition": ("SLURM_JOB_PARTITION",),
    "nodes": ("SLURM_JOB_NODELIST", "SLURM_NODELIST"),
    "num_nodes": ("SLURM_JOB_NUM_NODES", "SLURM_NNODES"),
    "cpus_per_task": ("SLURM_CPUS_PER_TASK",),
    "gpus": ("SLURM_GPUS_ON_NODE",),
    "cluster": ("SLURM_CLUSTER_NAME",),
}
_SLURM_COUNTS = ("num_nodes", "cpus_per_task", "gpus")

DMI_FIELDS = ("sys_vendor", "product_name", "bios_vendor", "board_vendor")
# (provider, DMI field, substring), first match wins: what each cloud's hypervisor writes into DMI
# (Jetstream2: sys_vendor "OpenStack Foundation", product_name "OpenStack Nova").
CLOUDS = (
    ("openstack", "product_name", "openstack"), ("openstack", "sys_vendor", "openstack"),
    ("aws", "sys_vendor", "amazon ec2"), ("aws", "bios_vendor", "amazon"),
    ("aws", "product_name", "hvm domu"),          # Xen-era EC2 instances
    ("gcp", "sys_vendor", "google"), ("gcp", "product_name", "google compute engine"),
    ("azure", "chassis_asset_tag", "7783-7084-3265-9085-8269-3286-77"),  # Azure's fixed asset tag
    ("oracle", "chassis_asset_tag", "oraclecloud.com"),
    ("digitalocean", "sys_vendor", "digitalocean"), ("hetzner", "sys_vendor", "hetzner"),
    ("alibaba", "sys_vendor", "alibaba cloud"),
    ("hyperv", "sys_vendor", "microsoft corporation"), ("vmware", "sys_vendor", "vmware"),
    ("virtualbox", "product_name", "virtualbox"), ("xen", "sys_vendor", "xen"),
    ("kvm", "sys_vendor", "qemu"), ("kvm", "product_name", "kvm"),
)


class Unknown(Exception):
    """A fact that cannot be read here; the message is the whole reason."""


def os_info() -> dict:
    system = platform.system()
    distro = None
    if system == "Linux":
        try:
            distro = platform.freedesktop_os_release().get("PRETTY_NAME")
        except OSError:  # no /etc/os-release (some minimal images)
            pass
    elif system == "Darwin":
        distro = f"macOS {platform.mac_ver()[0]}" if platform.mac_ver()[0] else None
    return {"system": system, "release": platform.release(), "version": platform.version(), "distro": distro}


def container(environ=os.environ, root: Path = ROOT) -> dict:
    """{'kind', 'evidence'}: the first sign of a container, most specific first."""
    if environ.get("KUBERNETES_SERVICE_HOST"):
        return {"kind": "kubernetes", "evidence": "KUBERNETES_SERVICE_HOST env"}
    containerenv = root / "run/.containerenv"
    if containerenv.exists():  # podman creates it; it names the engine only for --privileged containers
        engine = re.search(r'engine="?([a-z]+)', _read(containerenv) or "")
        kind = engine.group(1) if engine and engine.group(1) in ("podman", "docker") else "podman"
        return {"kind": kind, "evidence": "/run/.containerenv" + (f" engine={engine.group(1)}" if engine else "")}
    if (root / ".dockerenv").exists():
        return {"kind": "docker", "evidence": "/.dockerenv"}
    if environ.get("container"):  # podman, systemd-nspawn, lxc set it for PID 1; images may pass it on
        value = environ["container"]
        return {"kind": value if value in ("docker", "podman") else "container",
                "evidence": f"container={value} env"}
    cgroup = _read(root / "proc/1/cgroup") or ""  # cgroup v1 only: under v2 a container sees just "0::/"
    for word, kind in (("kubepods", "kubernetes"), ("docker", "docker"), ("libpod", "podman"),
                       ("containerd", "container"), ("lxc", "container")):
        if word in cgroup:
            return {"kind": kind, "evidence": f"/proc/1/cgroup mentions {word}"}
    return {"kind": None, "evidence": None}


def image(environ=os.environ) -> dict | None:
    """The dlbench image this process runs in: the JSON its build wrote (images/image_info.py: image tag,
    version, revision, source, base image, lock file and its sha256), found through $DLBENCH_IMAGE_INFO
    (set by images/*/Dockerfile). None outside a dlbench image; raises Unknown when the file is unreadable."""
    path = environ.get("DLBENCH_IMAGE_INFO")
    if not path:
        return None
    try:
        info = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise Unknown(f"DLBENCH_IMAGE_INFO={path} is unreadable ({e})") from None
    if not isinstance(info, dict):
        raise Unknown(f"DLBENCH_IMAGE_INFO={path} holds no JSON object")
    return info


def notebook(environ=os.environ, modules=None) -> dict:
    """{'kind', 'details'}: Colab, Kaggle, JupyterHub or a plain Jupyter kernel, from its variables."""
    modules = sys.modules if modules is None else modules
    kind = None
    if any(v in environ for v in ("COLAB_RELEASE_TAG", "COLAB_GPU", "COLAB_JUPYTER_IP")):
        kind = "colab"
    elif "KAGGLE_KERNEL_RUN_TYPE" in environ or "KAGGLE_URL_BASE" in environ:
        kind = "kaggle"
    elif "JUPYTERHUB_USER" in environ or "JUPYTERHUB_API_URL" in environ:
        kind = "jupyterhub"
    elif any(v in environ for v in NOTEBOOK_VARS["jupyter"]) or "ipykernel" in modules:
        kind = "jupyter"
    details = {} if kind is None else {v: environ[v] for v in NOTEBOOK_VARS[kind]
                                       if v in environ and not _SECRET.search(v)}
    return {"kind": kind, "details": details}


def scheduler(environ=os.environ) -> dict | None:
    """Slurm job facts from its variables; None outside a Slurm job."""
    if not any(v in environ for v in SLURM_VARS["job_id"]):
        return None
    out: dict = {"kind": "slurm"}
    for field, names in SLURM_VARS.items():
        out[field] = next((environ[n] for n in names if environ.get(n)), None)
    if out["gpus"] is None and environ.get("SLURM_JOB_GPUS"):  # GPU ids, e.g. "0,1": count them
        out["gpus"] = str(len(environ["SLURM_JOB_GPUS"].split(",")))
    for field in _SLURM_COUNTS:
        out[field] = int(out[field]) if out[field] and out[field].isdigit() else None
    return out


def cloud(dmi: Path = DMI) -> dict:
    """{'provider', 'sys_vendor', ...} from the DMI strings the hypervisor or firmware sets.
    Raises Unknown where DMI cannot be read (not Linux, or a sandbox that hides /sys)."""
    if not dmi.is_dir():
        raise Unknown(f"no {dmi} (DMI is read from Linux sysfs; this system or sandbox does not expose it)")
    values = {f: _read(dmi / f) for f in (*DMI_FIELDS, "chassis_asset_tag")}
    provider = next((p for p, field, word in CLOUDS if word in (values[field] or "").lower()), None)
    return {"provider": provider, **{f: values[f] for f in DMI_FIELDS}}


def apple_chip() -> str | None:
    """'Apple M1 Pro' etc. on macOS; None elsewhere (not applicable, so not an error)."""
    if platform.system() != "Darwin":
        return None
    out = subprocess.run(["sysctl", "-n", "machdep.cpu.brand_string"], capture_output=True, text=True,
                         timeout=5, check=True)
    return out.stdout.strip() or None


def nvidia_gpus(root: Path = ROOT) -> list[str]:
    """The GPUs the NVIDIA kernel driver registered (/proc/driver/nvidia/gpus/<PCI address>)."""
    folder = root / "proc/driver/nvidia/gpus"
    try:
        return sorted(p.name for p in folder.iterdir())
    except OSError:
        return []


def _read(path: Path) -> str | None:
    try:
        return path.read_text(errors="replace").strip() or None
    except OSError:  # missing, or root-only (e.g. DMI serial numbers)
        return None
