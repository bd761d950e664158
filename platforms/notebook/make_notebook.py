"""Write dlbench.ipynb from dlbench_cell.py (the one paste-in cell), so the two never differ.

    python platforms/notebook/make_notebook.py          # after editing dlbench_cell.py
    python platforms/notebook/make_notebook.py --check  # exit 1 if dlbench.ipynb is stale (tests/test_notebook.py)
"""

import sys
from pathlib import Path

import nbformat

HERE = Path(__file__).resolve().parent
INTRO = """# dlbench in a notebook

One cell: installs dlbench (keeping this notebook's own PyTorch, TensorFlow and JAX), fetches and verifies
MNIST, runs the standard workload (LeNet-5, 50 epochs) on every framework here, on the GPU if the
notebook has one, shows the table and saves the records (Colab: a zip download, optionally Drive;
Kaggle: /kaggle/working; JupyterHub: your home folder). For a one-minute check first, set
`DLBENCH_ARGS="--preset smoke"` (e.g. `%env DLBENCH_ARGS=--preset smoke`) before running it.

dlbench installs from what you bring: a wheel built in a dlbench checkout with `python -m build`
(`dist/dlbench-*.whl`) and uploaded next to this notebook is found by itself (Kaggle: add it as a
dataset); or set `DLBENCH_SOURCE` to a wheel, the path of a checkout, or a git URL
(`%env DLBENCH_SOURCE=git+https://HOST/OWNER/dlbench`)."""


def build() -> str:
    nb = nbformat.v4.new_notebook()
    nb.metadata = {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                   "language_info": {"name": "python"},
                   "accelerator": "GPU", "colab": {"provenance": []}}  # Colab opens it on a GPU runtime
    nb.cells = [nbformat.v4.new_markdown_cell(INTRO, id="intro"),
                nbformat.v4.new_code_cell((HERE / "dlbench_cell.py").read_text().rstrip("\n"), id="dlbench")]
    return nbformat.writes(nb) + "\n"


if __name__ == "__main__":
    target = HERE / "dlbench.ipynb"
    if sys.argv[1:] == ["--check"]:
        if not target.exists() or target.read_text() != build():
            print("dlbench.ipynb is stale: python platforms/notebook/make_notebook.py", file=sys.stderr)
            sys.exit(1)
        sys.exit(0)
    target.write_text(build())
    print(f"wrote {target}")
