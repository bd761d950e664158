"""The paste-in notebook cell: dlbench.ipynb matches dlbench_cell.py, and the notebook really runs
(nbclient, a real ipykernel in a fresh venv that installs dlbench from this checkout, smoke preset).

    python -m pytest tests/test_notebook.py -q      # the slow one takes ~2-3 min (three frameworks, CPU)
"""

from __future__ import annotations

import json
import subprocess
import sys
import sysconfig
import zipfile

import pytest

from conftest import ROOT
from runner import records

NOTEBOOK = ROOT / "platforms" / "notebook"


def test_ipynb_is_generated_from_the_cell_source():
    done = subprocess.run([sys.executable, str(NOTEBOOK / "make_notebook.py"), "--check"], capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr
    nb = json.loads((NOTEBOOK / "dlbench.ipynb").read_text())
    assert "".join(nb["cells"][1]["source"]) == (NOTEBOOK / "dlbench_cell.py").read_text().rstrip("\n")
    compile((NOTEBOOK / "dlbench_cell.py").read_text(), "dlbench_cell.py", "exec")


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
    monkeypatch.setenv("DLBENCH_SOURCE", str(ROOT))
    monkeypatch.setenv("DLBENCH_ARGS", "--preset smoke --dataset synthetic")
    monkeypatch.setenv("DLBENCH_OUT", str(out))
    work = tmp_path / "work"  # the kernel's cwd: `import runner` must find the installed copy, not the checkout
    work.mkdir()
    nb = nbformat.read(NOTEBOOK / "dlbench.ipynb", as_version=4)
    nbclient.NotebookClient(nb, kernel_name="dlbench-test", timeout=1200,
                            resources={"metadata": {"path": str(work)}}).execute()

    outputs = nb.cells[1].outputs
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "No GPU in this notebook" in text
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
