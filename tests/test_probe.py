"""The probe: this machine for real, NVML through a fake pynvml, environments from fake variables and
files, framework build facts, and `python -m runner probe` as a user types it."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import namedtuple
from pathlib import Path

import jsonschema
import pytest

import fake_pynvml
from conftest import ROOT, has, needs_jax, needs_tf, needs_torch, run_cli
from runner import records
from runner.machine import buildinfo, platforms, probe, where
from runner.measure import nvml

SCHEMA = json.loads((ROOT / f"runner/records/schemas/record.v{records.SCHEMA_VERSION}.json").read_text())
HARDWARE_KEYS = {"cpu", "memory_bytes", "gpus", "errors"}
ENVIRONMENT_KEYS = {"hostname", "os", "container", "image", "notebook", "scheduler", "cloud", "apple_chip", "thread_env",
                    "errors"}
GPU_KEYS = {"index", "name", "uuid", "memory_total_bytes", "driver_version", "cuda_driver_version",
            "compute_capability", "power_limit_w", "max_sm_clock_mhz", "max_memory_clock_mhz", "pcie_max_gen",
            "pcie_max_width", "pcie_gen", "pcie_width"}


def validate(part: str, value) -> None:
    jsonschema.Draft202012Validator({**SCHEMA["properties"][part], "$defs": SCHEMA["$defs"]}).validate(value)


# ---- this machine ---------------------------------------------------------------------------------

def test_hardware_of_this_machine_is_filled_and_valid():
    hw = probe.hardware()
    assert set(hw) == HARDWARE_KEYS
    validate("hardware", hw)
    cpu = hw["cpu"]
    assert cpu["brand"] and cpu["arch"] and cpu["logical_cores"] >= 1 and cpu["physical_cores"] >= 1
    assert 1 <= cpu["usable_cores"] <= cpu["logical_cores"]
    assert set(cpu["freq_mhz"]) == {"current", "min", "max"}
    assert set(cpu["flags"]) == {"avx2", "avx512f", "amx", "neon"}
    if "avx2" in Path("/proc/cpuinfo").read_text():  # this AMD EPYC has it
        assert cpu["flags"]["avx2"] is True and cpu["flags"]["neon"] is False
    assert hw["memory_bytes"] > 2**28
    if not Path("/proc/driver/nvidia").exists():  # no driver here: unknown, with the reason, never []
        assert hw["gpus"] is None
        assert "no NVIDIA driver" in hw["errors"]["gpus"] or "NVML unavailable" in hw["errors"]["gpus"]


def test_environment_of_this_machine_is_valid():
    env = probe.environment()
    assert set(env) == ENVIRONMENT_KEYS
    validate("environment", {**env, "load_avg_start": probe.load_avg(), "load_avg_end": probe.load_avg()})
    assert env["hostname"] and env["os"]["system"] == "Linux" and env["os"]["release"]
    assert env["apple_chip"] is None and "apple_chip" not in env["errors"]  # not applicable: no error
    if not Path("/sys/class/dmi/id").is_dir():  # this sandbox hides DMI
        assert env["cloud"] is None and "/sys/class/dmi/id" in env["errors"]["cloud"]


def test_cpuinfo_is_not_imported_with_the_probe():
    code = "import sys, runner.machine.probe, runner.machine.where, runner.machine.platforms; print('cpuinfo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "False"


# ---- CPU soft-fails ---------------------------------------------------------------------------------

def test_cpu_without_py_cpuinfo_names_the_reason(monkeypatch):
    def broken():
        raise RuntimeError("confused")

    monkeypatch.setattr(probe, "_cpuinfo", broken)
    monkeypatch.setattr(probe.platform, "machine", lambda: "x86_64")
    errors = {}
    cpu = probe.cpu(errors)
    assert cpu["vendor"] is None and "py-cpuinfo failed (RuntimeError: confused)" in errors["cpu.vendor"]
    assert cpu["flags"] is None and "no CPU flag list" in errors["cpu.flags"]
    assert cpu["logical_cores"] >= 1  # psutil still answers


def test_flags_from_the_list_and_on_arm():
    info = {"flags": ["sse2", "avx2", "amx_tile"]}
    assert probe._flags(info, "x86_64") == {"avx2": True, "avx512f": False, "amx": True, "neon": False}
    assert probe._flags({"flags": ["fp", "asimd"]}, "armv8l")["neon"] is True
    assert probe._flags({}, "arm64") == {"avx2": False, "avx512f": False, "amx": False, "neon": True}


def test_max_clock_falls_back_only_to_a_clock_the_brand_names(monkeypatch):
    freq = namedtuple("freq", "current min max")
    monkeypatch.setattr("psutil.cpu_freq", lambda: freq(2600.0, 0.0, 0.0))
    soft = probe._Soft()
    named = {"hz_advertised": [2_200_000_000, 0], "hz_actual": [2_600_000_000, 0]}  # "... @ 2.20GHz"
    assert probe._freq(soft, named) == {"current": 2600.0, "min": None, "max": 2200.0}
    copied = {"hz_advertised": [2_600_000_000, 0], "hz_actual": [2_600_000_000, 0]}  # py-cpuinfo's copy
    soft = probe._Soft()
    assert probe._freq(soft, copied)["max"] is None and "cpu.freq_mhz.max" in soft.errors


# ---- GPUs through a fake NVML ---------------------------------------------------------------------

def with_nvml(monkeypatch, gpus, **kwargs):
    fake = fake_pynvml.make(gpus, **kwargs)
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    return fake


def test_every_gpu_field_in_its_unit(monkeypatch):
    fake = with_nvml(monkeypatch, [fake_pynvml.GPU()])
    errors = {}
    (gpu,) = probe.gpus(errors)
    assert errors == {} and set(gpu) == GPU_KEYS
    assert gpu == {"index": 0, "name": "NVIDIA H100 80GB HBM3", "uuid": "GPU-11111111-2222-3333-4444-555555555555",
                   "memory_total_bytes": 85_520_809_984, "driver_version": "560.35.03", "cuda_driver_version": "12.6",
                   "compute_capability": "9.0", "power_limit_w": 700.0, "max_sm_clock_mhz": 1980,
                   "max_memory_clock_mhz": 2619, "pcie_max_gen": 5, "pcie_max_width": 16, "pcie_gen": 5,
                   "pcie_width": 16}
    assert fake.state == {"initialized": 1, "shutdowns": 1}
    hw = probe.hardware()
    validate("hardware", hw)
    assert hw["gpus"][0]["power_limit_w"] == 700.0 and "gpus" not in hw["errors"]


def test_an_unsupported_field_is_null_with_its_reason(monkeypatch):
    gpu = fake_pynvml.GPU(unsupported={"nvmlDeviceGetPowerManagementLimit", "nvmlDeviceGetCurrPcieLinkWidth"})
    with_nvml(monkeypatch, [gpu])
    errors = {}
    (g,) = probe.gpus(errors)
    assert g["power_limit_w"] is None and g["pcie_width"] is None and g["name"] == gpu.name
    assert errors == {"gpus[0].power_limit_w": "NVMLError_NotSupported: Not Supported",
                      "gpus[0].pcie_width": "NVMLError_NotSupported: Not Supported"}


def test_two_gpus(monkeypatch):
    second = fake_pynvml.GPU(name="NVIDIA A100-SXM4-40GB", uuid="GPU-aaaa", compute_capability=(8, 0),
                             power_limit_mw=400_000, pcie=(4, 16, 4, 8))
    with_nvml(monkeypatch, [fake_pynvml.GPU(), second], cuda_driver=12020)
    errors = {}
    gpus = probe.gpus(errors)
    assert [g["index"] for g in gpus] == [0, 1] and errors == {}
    assert gpus[1]["compute_capability"] == "8.0" and gpus[1]["power_limit_w"] == 400.0
    assert gpus[1]["pcie_width"] == 8 and gpus[1]["cuda_driver_version"] == "12.2"


def test_no_driver_means_unknown_not_none(monkeypatch):
    with_nvml(monkeypatch, [], init_error=fake_pynvml.NVMLError_LibraryNotFound())
    errors = {}
    assert probe.gpus(errors) is None
    assert errors["gpus"] == ("NVML unavailable (NVMLError_LibraryNotFound: NVML Shared Library Not Found):"
                              " no NVIDIA driver")


def test_zero_gpus_is_an_empty_list(monkeypatch):
    with_nvml(monkeypatch, [])
    errors = {}
    assert probe.gpus(errors) == [] and errors == {}


def test_visible_gpus_follow_cuda_visible_devices(monkeypatch):
    gpus = [fake_pynvml.GPU(uuid=f"GPU-{i}{i}{i}-abc") for i in range(3)]
    fake = with_nvml(monkeypatch, gpus)
    with nvml.session() as nv:
        assert [i for i, _ in nvml.visible(nv, {})] == [0, 1, 2]
        assert [i for i, _ in nvml.visible(nv, {"CUDA_VISIBLE_DEVICES": "2,0"})] == [2, 0]
        assert [i for i, _ in nvml.visible(nv, {"CUDA_VISIBLE_DEVICES": "GPU-111"})] == [1]
        assert [i for i, _ in nvml.visible(nv, {"CUDA_VISIBLE_DEVICES": "1,7,2"})] == [1]  # stops at 7
        assert nvml.visible(nv, {"CUDA_VISIBLE_DEVICES": ""}) == []
    assert fake.state["shutdowns"] == 1


# ---- where it runs --------------------------------------------------------------------------------

SLURM = {"SLURM_JOB_ID": "4242", "SLURM_ARRAY_JOB_ID": "4240", "SLURM_ARRAY_TASK_ID": "2",
         "SLURM_JOB_PARTITION": "gpu", "SLURM_JOB_NODELIST": "g[01-02]", "SLURM_JOB_NUM_NODES": "2",
         "SLURM_CPUS_PER_TASK": "8", "SLURM_GPUS_ON_NODE": "4", "SLURM_CLUSTER_NAME": "delta"}


def test_slurm_job_fields():
    assert where.scheduler({}) is None
    assert where.scheduler(SLURM) == {"kind": "slurm", "job_id": "4242", "array_job_id": "4240",
                                      "array_task_id": "2", "partition": "gpu", "nodes": "g[01-02]",
                                      "num_nodes": 2, "cpus_per_task": 8, "gpus": 4, "cluster": "delta"}
    job = where.scheduler({"SLURM_JOBID": "7", "SLURM_NNODES": "1", "SLURM_JOB_GPUS": "0,1"})
    assert job["job_id"] == "7" and job["num_nodes"] == 1 and job["gpus"] == 2 and job["partition"] is None


@pytest.mark.parametrize("environ, kind", [
    ({"COLAB_RELEASE_TAG": "release-colab_20250101-060000_RC00", "COLAB_GPU": "1"}, "colab"),
    ({"KAGGLE_KERNEL_RUN_TYPE": "Interactive", "KAGGLE_DATA_PROXY_PROJECT": "kaggle-161607"}, "kaggle"),
    ({"JUPYTERHUB_USER": "ana", "JUPYTERHUB_API_TOKEN": "s3cret"}, "jupyterhub"),
    ({"JPY_PARENT_PID": "17"}, "jupyter"),
    ({"HOME": "/root"}, None),
])
def test_notebook_kind_and_no_secrets(environ, kind):
    nb = where.notebook({**environ, "KAGGLE_USER_SECRETS_TOKEN": "s3cret"}, modules={})
    assert nb["kind"] == kind
    assert "s3cret" not in json.dumps(nb)
    assert set(nb["details"]) <= set(environ)


def test_kaggle_details_keep_the_allowlisted_variables():
    nb = where.notebook({"KAGGLE_KERNEL_RUN_TYPE": "Batch", "KAGGLE_URL_BASE": "https://www.kaggle.com",
                         "KAGGLE_DATA_PROXY_TOKEN": "tok", "PATH": "/usr/bin"}, modules={})
    assert nb == {"kind": "kaggle", "details": {"KAGGLE_KERNEL_RUN_TYPE": "Batch",
                                                "KAGGLE_URL_BASE": "https://www.kaggle.com"}}


def dmi(tmp_path, **values) -> Path:
    folder = tmp_path / "dmi"
    folder.mkdir()
    for name, value in values.items():
        (folder / name).write_text(value + "\n")
    return folder


@pytest.mark.parametrize("values, provider", [
    ({"sys_vendor": "OpenStack Foundation", "product_name": "OpenStack Nova", "bios_vendor": "SeaBIOS",
      "board_vendor": "OpenStack Foundation"}, "openstack"),  # Jetstream2
    ({"sys_vendor": "Amazon EC2", "product_name": "g5.xlarge", "bios_vendor": "Amazon EC2"}, "aws"),
    ({"sys_vendor": "Google", "product_name": "Google Compute Engine"}, "gcp"),
    ({"sys_vendor": "Microsoft Corporation", "product_name": "Virtual Machine",
      "chassis_asset_tag": "7783-7084-3265-9085-8269-3286-77"}, "azure"),
    ({"sys_vendor": "QEMU", "product_name": "Standard PC (Q35 + ICH9, 2009)"}, "kvm"),
    ({"sys_vendor": "Dell Inc.", "product_name": "PowerEdge R750"}, None),
])
def test_cloud_from_dmi(tmp_path, values, provider):
    cloud = where.cloud(dmi(tmp_path, **values))
    assert cloud["provider"] == provider and cloud["sys_vendor"] == values["sys_vendor"]
    assert "chassis_asset_tag" not in cloud


def test_cloud_without_dmi_is_unknown_with_a_reason(tmp_path):
    env = probe.environment(environ={}, root=tmp_path, dmi=tmp_path / "nope")
    assert env["cloud"] is None and "nope" in env["errors"]["cloud"]
    env = probe.environment(environ={}, root=tmp_path, dmi=dmi(tmp_path, sys_vendor="OpenStack Foundation"))
    assert env["cloud"]["provider"] == "openstack" and "cloud.product_name" in env["errors"]


@pytest.mark.parametrize("files, environ, kind, evidence", [
    ({".dockerenv": ""}, {}, "docker", "/.dockerenv"),
    ({"run/.containerenv": 'engine="podman-4.9.3"\nname="x"\n'}, {}, "podman", "/run/.containerenv engine=podman"),
    ({"run/.containerenv": ""}, {}, "podman", "/run/.containerenv"),
    ({}, {"container": "podman"}, "podman", "container=podman env"),
    ({}, {"container": "systemd-nspawn"}, "container", "container=systemd-nspawn env"),
    ({".dockerenv": ""}, {"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "kubernetes", "KUBERNETES_SERVICE_HOST env"),
    ({"proc/1/cgroup": "12:cpu:/docker/0123abcd\n"}, {}, "docker", "/proc/1/cgroup mentions docker"),
    ({"proc/1/cgroup": "0::/\n"}, {}, None, None),
])
def test_container_evidence(tmp_path, files, environ, kind, evidence):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert where.container(environ, tmp_path) == {"kind": kind, "evidence": evidence}


def test_environment_from_a_fake_machine(tmp_path):
    (tmp_path / ".dockerenv").write_text("")
    env = probe.environment(environ={**SLURM, "COLAB_GPU": "0"}, root=tmp_path,
                            dmi=dmi(tmp_path, sys_vendor="OpenStack Foundation", product_name="OpenStack Nova",
                                    bios_vendor="SeaBIOS", board_vendor="OpenStack Foundation"))
    validate("environment", {**env, "load_avg_start": [0.1], "load_avg_end": [0.2]})
    assert env["container"]["kind"] == "docker" and env["notebook"]["kind"] == "colab"
    assert env["scheduler"]["job_id"] == "4242" and env["cloud"]["provider"] == "openstack"
    assert "cloud" not in env["errors"]


@pytest.mark.parametrize("environ, files, expected", [
    ({"COLAB_GPU": "1", **SLURM}, {".dockerenv": ""}, "colab"),
    ({"KAGGLE_KERNEL_RUN_TYPE": "Batch"}, {".dockerenv": ""}, "kaggle"),
    (SLURM, {".dockerenv": "", "proc/driver/nvidia/gpus/0000:01:00.0/information": ""}, "slurm"),
    ({}, {"run/.containerenv": "", "proc/driver/nvidia/gpus/0000:01:00.0/information": ""}, "docker"),
    ({}, {"proc/driver/nvidia/gpus/0000:01:00.0/information": ""}, "cuda"),
    ({"JPY_PARENT_PID": "1"}, {}, "local"),
    ({}, {}, "local"),
])
def test_platform_detection_order(tmp_path, monkeypatch, environ, files, expected):
    monkeypatch.setattr(platforms.sys, "platform", "linux")
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(text)
    assert platforms.detect(environ, root=tmp_path) == expected


def test_apple_silicon_comes_before_cuda(tmp_path, monkeypatch):
    monkeypatch.setattr(platforms.sys, "platform", "darwin")
    monkeypatch.setattr(platforms._platform, "machine", lambda: "arm64")
    assert platforms.detect({}, root=tmp_path) == "m1"


# ---- framework build facts ------------------------------------------------------------------------

def test_version_encodings():
    assert buildinfo.cuda_version(12080) == "12.8" and buildinfo.cuda_version(11080) == "11.8"
    assert buildinfo.cudnn_version(90100) == "9.1.0" and buildinfo.cudnn_version(8902) == "8.9.2"
    assert buildinfo.cudnn_version(91900) == "9.19.0"


@needs_torch
def test_torch_build_facts():
    import torch

    info = buildinfo.collect("torch")
    assert info["version"] == torch.__version__ and info["errors"] == {}
    assert info["threads"] >= 1 and info["mps_available"] in (True, False)
    if not torch.cuda.is_available():  # this machine: a CPU build
        assert info["cuda_available"] is False and info["gpu_count"] == 0 and info["gpu_names"] == []
    if "+cpu" in torch.__version__:
        assert info["cuda"] is None and info["cudnn"] is None


def test_unknown_framework_and_failed_subprocesses():
    assert "unknown framework" in buildinfo.collect("caffe")["error"]
    procs = {"broken": subprocess.Popen([sys.executable, "-c", "import sys; sys.exit('no such framework')"],
                                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True),
             "slow": subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)}
    out = buildinfo.finish(procs, timeout=2)
    assert out["broken"]["error"].endswith("exited 1: no such framework")
    assert "took over 2 s" in out["slow"]["error"]


@pytest.mark.slow
@pytest.mark.parametrize("name", [pytest.param("tensorflow", marks=needs_tf), pytest.param("jax", marks=needs_jax)])
def test_tensorflow_and_jax_build_facts_in_their_own_process(name):
    info = buildinfo.finish(buildinfo.start([name]))[name]
    assert "error" not in info and info["errors"] == {}
    from importlib.metadata import version

    assert info["version"] == version(name)
    if name == "jax":
        assert info["default_backend"] in ("cpu", "gpu", "cuda", "METAL", "tpu") and info["devices"]
        assert info["metal"] is False or info["default_backend"] == "METAL"
    else:
        assert isinstance(info["built_with_cuda"], bool) and isinstance(info["gpus"], list)


# ---- text and command line ------------------------------------------------------------------------

def test_render_shows_gpus_frameworks_and_reasons(monkeypatch):
    with_nvml(monkeypatch, [fake_pynvml.GPU(unsupported={"nvmlDeviceGetPowerManagementLimit"})])
    env = probe.environment(environ=SLURM, root=Path("/nonexistent"), dmi=Path("/nonexistent"))
    info = {"platform": {"name": "slurm", "source": "detected"}, "hardware": probe.hardware(), "environment": env,
            "software": probe.software(),
            "frameworks": {"torch": {"version": "2.5.1", "cuda": "12.4", "cudnn": "9.1.0", "gpu_names": ["H100"],
                                     "threads": 8, "interop_threads": 8, "errors": {"mps_built": "boom"}},
                           "jax": {"error": "ImportError: no jaxlib"}}}
    text = probe.render(info)
    assert "gpu 0" in text and "NVIDIA H100 80GB HBM3, 79.6 GiB, cc 9.0, PCIe gen5 x16" in text
    lines = {line.split(None, 1)[0]: line.split(None, 1)[1] for line in text.splitlines()}
    assert "Not Supported" in lines["(gpus[0].power_limit_w)"] and lines["(torch.mps_built)"] == "boom"
    assert "built for CUDA 12.4, cuDNN 9.1.0" in text and "failed: ImportError: no jaxlib" in text
    assert "job_id 4242" in text and "(cloud)" in text


def test_cli_probe_json_without_frameworks():
    out = run_cli("probe", "--json", "--no-frameworks", timeout=60)
    assert out.returncode == 0, out.stderr
    info = json.loads(out.stdout)
    assert set(info) == {"platform", "hardware", "environment", "software", "frameworks"}
    assert info["frameworks"] is None and set(info["hardware"]) == HARDWARE_KEYS
    assert set(info["environment"]) == ENVIRONMENT_KEYS | {"load_avg"}
    validate("hardware", info["hardware"])


@pytest.mark.slow
def test_cli_probe_text_with_frameworks():
    out = run_cli("probe", timeout=200)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("platform") and "cpu" in out.stdout and "python" in out.stdout
    for name in ("torch", "tensorflow", "jax"):
        if has(name):
            assert f"\n{name} " in out.stdout and f"({name})" not in out.stdout
