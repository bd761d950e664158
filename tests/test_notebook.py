"""The paste-in notebook cell: dlbench.ipynb matches dlbench_cell.py, it says what to set when it has
nothing to install, and the notebook really runs (nbclient, a real ipykernel in a fresh venv that
installs dlbench from a wheel built from this checkout and left next to the notebook, smoke preset).

    python -m pytest tests/test_notebook.py -q      # the slow one takes ~2-3 min (three frameworks, CPU)
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import time
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT
from runner import records

NOTEBOOK = ROOT / "platforms" / "notebook"
CELL = NOTEBOOK / "dlbench_cell.py"


def test_ipynb_is_generated_from_the_cell_source():
    done = subprocess.run([sys.executable, str(NOTEBOOK / "make_notebook.py"), "--check"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    nb = json.loads((NOTEBOOK / "dlbench.ipynb").read_text())
    assert "".join(nb["cells"][1]["source"]) == (NOTEBOOK / "dlbench_cell.py").read_text().rstrip("\n")
    compile((NOTEBOOK / "dlbench_cell.py").read_text(), "dlbench_cell.py", "exec")


def _run_cell(cwd: Path, home: Path, **env) -> subprocess.CompletedProcess:
    """The cell as a script, as a notebook with nothing set would run it: no DLBENCH_SOURCE, an empty
    home, not on Colab or Kaggle; pip never reaches an index."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("DLBENCH_", "COLAB_", "KAGGLE_", "JUPYTERHUB_"))}
    return subprocess.run([sys.executable, str(CELL)], cwd=cwd, capture_output=True, text=True, timeout=120,
                          env={**keep, "HOME": str(home), "PIP_NO_INDEX": "1", **env})


def test_with_nothing_to_install_the_cell_says_what_to_set(tmp_path):
    """It installed from git+https://github.com/dlbench/dlbench, an address that does not exist."""
    (tmp_path / "home").mkdir()
    done = _run_cell(tmp_path, tmp_path / "home")
    assert done.returncode == 1 and done.stdout == ""  # nothing ran: no pip
    (line,) = done.stderr.splitlines()
    assert line.startswith("dlbench: nothing to install dlbench from.") and "Traceback" not in done.stderr
    assert "DLBENCH_SOURCE" in line and "python -m build" in line and "github.com" not in CELL.read_text()


def test_the_cell_installs_the_newest_dlbench_wheel_next_to_the_notebook(tmp_path):
    """A wheel in the notebook's folder or its dist/ is what pip is given; DLBENCH_SOURCE wins over it.
    (The wheels here are not zip files: pip refuses them at once, the command line is what counts.)"""
    (tmp_path / "home").mkdir()
    (tmp_path / "dist").mkdir()
    old, new = tmp_path / "dlbench-0.0.9-py3-none-any.whl", tmp_path / "dist" / "dlbench-0.1.0-py3-none-any.whl"
    for i, wheel in enumerate((old, new)):
        wheel.write_bytes(b"not a zip")
        os.utime(wheel, (time.time() - 100 + i, time.time() - 100 + i))
    done = _run_cell(tmp_path, tmp_path / "home")
    assert f"dlbench: installing {new} (newest of 2 wheels)\n" in done.stdout
    (pip,) = [line for line in done.stdout.splitlines() if line.startswith("$ ")]
    assert pip.endswith(f" {new}") and "pip install" in pip
    assert done.returncode == 1 and "dlbench: pip exited" in done.stderr  # and the cell stopped there
    done = _run_cell(tmp_path, tmp_path / "home", DLBENCH_SOURCE=str(old))
    assert "dlbench: installing" not in done.stdout and f" {old}\n" in done.stdout


def _git_files(root: Path, to: Path) -> Path:
    """A copy of the files git knows in `root` (tracked, and new ones not ignored): never the ignored
    .venv/, build output or .podman/ (a container store with device nodes: copying it filled a CI disk)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=root,
                            capture_output=True, text=True)
    if listed.returncode != 0:
        pytest.skip(f"{root} is not a git checkout: {listed.stderr.strip()}")
    for name in filter(None, listed.stdout.split("\0")):
        source = root / name
        if source.is_file() and not source.is_symlink():  # a tracked file deleted here is not copied
            (to / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, to / name)
    return to


def test_the_checkout_copy_holds_only_what_git_knows(tmp_path):
    (tmp_path / "repo").mkdir()
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / ".gitignore").write_text(".podman/\n.venv/\n")
    for name in ("tracked.py", "new.py", ".podman/storage/overlay/x", ".venv/bin/python"):
        (repo / name).parent.mkdir(parents=True, exist_ok=True)
        (repo / name).write_text(name)
    subprocess.run(["git", "add", "tracked.py", ".gitignore"], cwd=repo, check=True)
    copy = _git_files(repo, tmp_path / "copy")
    assert sorted(str(p.relative_to(copy)) for p in copy.rglob("*") if p.is_file()) == [".gitignore", "new.py",
                                                                                          "tracked.py"]


@pytest.fixture
def kernel(tmp_path, monkeypatch):
    """A kernel in a fresh venv that sees this environment's frameworks (a .pth file, as a notebook
    image ships them preinstalled) but not dlbench: the cell must install it."""
    pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    site = next((venv / "lib").glob("python3*/site-packages"))
    (site / "notebook_image.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    spec = tmp_path / "jupyter" / "kernels" / "dlbench-test"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(json.dumps({
        "argv": [str(venv / "bin" / "python"), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "dlbench test", "language": "python"}))
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    return venv, site


@pytest.mark.slow
def test_the_notebook_installs_runs_shows_the_table_and_saves_the_records(kernel, tmp_path, monkeypatch):
    import nbclient
    import nbformat

    venv, site = kernel
    out = tmp_path / "out"
    monkeypatch.delenv("DLBENCH_SOURCE", raising=False)  # the wheel next to the notebook is found
    monkeypatch.setenv("DLBENCH_ARGS", "--preset smoke --dataset synthetic")
    monkeypatch.setenv("DLBENCH_OUT", str(out))
    work = tmp_path / "work"  # the kernel's cwd: `import runner` must find the installed copy, not the checkout
    work.mkdir()
    source = _git_files(ROOT, tmp_path / "source")  # what `python -m build` in a clean clone packs
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", str(work / "dist"),
                    str(source)], check=True, timeout=600)
    (wheel,) = (work / "dist").glob("dlbench-*.whl")
    nb = nbformat.read(NOTEBOOK / "dlbench.ipynb", as_version=4)
    nbclient.NotebookClient(nb, kernel_name="dlbench-test", timeout=1200,
                            resources={"metadata": {"path": str(work)}}).execute()

    outputs = nb.cells[1].outputs
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "No GPU in this notebook" in text and f"dlbench: installing {wheel}" in text
    markdown = [o["data"]["text/markdown"] for o in outputs if o.output_type == "display_data"]
    assert markdown and "| framework" in markdown[0]  # the table, rendered
    assert (site / "runner" / "__init__.py").exists()  # dlbench really was installed from the checkout

    files = sorted(out.glob("*.json"))
    assert {records.read(p)["framework"]["name"] for p in files} == {"torch", "tensorflow", "jax"}
    for path in files:
        record = records.read(path)  # validated against the schema
        assert record["status"] == "ok" and record["parity"]["status"] == "pass"
        assert record["environment"]["notebook"]["kind"] == "jupyter"
        assert record["device"]["kind"] == "cpu"
    with zipfile.ZipFile(f"{out}.zip") as archive:  # the records and the logs they name
        names = set(archive.namelist())
        assert {n for n in names if n.endswith(".json")} == {p.name for p in files}
        assert {records.read(p)["log_file"] for p in files} <= names
    assert f"{len(files)} record(s) from this run in {out}" in text
