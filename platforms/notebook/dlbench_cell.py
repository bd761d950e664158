# dlbench: paste this one cell into Colab, Kaggle or a JupyterHub notebook and run it.
# It installs dlbench (never over the notebook's own torch/TensorFlow/JAX), fetches and verifies MNIST,
# runs the standard workload on every framework the notebook has (on its GPU if it has one), shows the
# table and saves the records. Kaggle: switch Internet on (notebook settings) so that pip can install.
# Where dlbench comes from: a wheel built in a dlbench checkout with `python -m build` (dist/dlbench-*.whl),
# uploaded next to this notebook (Colab: the Files pane, i.e. /content; Kaggle: add it as a dataset), is
# found by itself; anything else is DLBENCH_SOURCE.
# Settings (environment variables, e.g. `%env DLBENCH_ARGS=--preset smoke`, or edit the lines below):
#   DLBENCH_SOURCE  what pip installs dlbench from: a wheel file, the path of a checkout, or a git URL
#                   (git+https://HOST/OWNER/dlbench@COMMIT); it wins over any wheel found
#   DLBENCH_ARGS    `run` flags, e.g. "--preset smoke" (a one-minute check) or "--framework torch --epochs 5"
#   DLBENCH_OUT     the records folder (default: /kaggle/working, /content or ~, + dlbench-results)
#   DLBENCH_DRIVE=1 on Colab, also copy the records to Google Drive (MyDrive/dlbench-results)
import importlib.metadata, importlib.util, os, pathlib, shlex, shutil, subprocess, sys, tempfile, time

SOURCE = os.environ.get("DLBENCH_SOURCE", "").strip()
ARGS = shlex.split(os.environ.get("DLBENCH_ARGS", ""))
where = ("colab" if "COLAB_RELEASE_TAG" in os.environ or "google.colab" in sys.modules
         else "kaggle" if "KAGGLE_KERNEL_RUN_TYPE" in os.environ
         else "jupyterhub" if "JUPYTERHUB_USER" in os.environ else "jupyter")
home = {"colab": "/content", "kaggle": "/kaggle/working"}.get(where, str(pathlib.Path.home()))
OUT = pathlib.Path(os.environ.get("DLBENCH_OUT") or pathlib.Path(home, "dlbench-results"))

if not SOURCE:  # dlbench is not on a package index: a wheel the user brought, newest first
    wheels = sorted({*pathlib.Path.cwd().glob("dlbench-*.whl"), *pathlib.Path.cwd().glob("dist/dlbench-*.whl"),
                     *pathlib.Path(home).glob("dlbench-*.whl"), *pathlib.Path("/kaggle/input").glob("*/dlbench-*.whl")},
                    key=lambda p: p.stat().st_mtime, reverse=True)
    if not wheels:
        raise SystemExit("dlbench: nothing to install dlbench from. Build a wheel in a dlbench checkout with"
                         " `python -m build` and upload dist/dlbench-*.whl next to this notebook, or set"
                         " DLBENCH_SOURCE (e.g. %env DLBENCH_SOURCE=/path/to/dlbench-0.1.0-py3-none-any.whl) to"
                         " a wheel, the path of a dlbench checkout, or a git URL (git+https://HOST/OWNER/dlbench)")
    SOURCE = str(wheels[0])
    print(f"dlbench: installing {SOURCE}" + (f" (newest of {len(wheels)} wheels)" if len(wheels) > 1 else ""))


def sh(*cmd):  # run a command, its output in the cell; stop the cell if it fails
    print("$", " ".join(map(str, cmd)), flush=True)
    proc = subprocess.Popen([str(c) for c in cmd], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        print(line, end="", flush=True)
    if proc.wait() != 0:
        raise RuntimeError(f"dlbench: {cmd[2] if len(cmd) > 2 else cmd[0]} exited {proc.returncode} (output above)")


# 1. Install dlbench. The notebook's frameworks (CUDA builds on Colab/Kaggle) stay as they are: their
#    installed versions become pip constraints, and only what the backends still lack is added.
have = {}
for name in ("torch", "tensorflow", "keras", "jax", "jaxlib", "numpy", "jax-cuda12-plugin", "jax-cuda13-plugin"):
    try:
        have[name] = importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        pass
pins = pathlib.Path(tempfile.mkdtemp(), "constraints.txt")
pins.write_text("".join(f"{k}=={v}\n" for k, v in have.items()))
missing = [p for p in ("flax", "optax") if "jax" in have and not importlib.util.find_spec(p)]
sh(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-c", pins, SOURCE, *missing)
if SOURCE.endswith(".whl"):  # pip keeps an installed dlbench of the wheel's version: a rebuilt wheel must win
    sh(sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "--no-deps",
       "--force-reinstall", SOURCE)
print("frameworks here:", ", ".join(f"{k} {v}" for k, v in have.items() if k in ("torch", "tensorflow", "jax")) or "none")

# 2. The GPU, if the notebook has one (the runner's --device auto takes it).
gpus = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout.strip() if shutil.which("nvidia-smi") else ""
print(f"GPU: {gpus}" if gpus else "No GPU in this notebook: running on the CPU (Colab: Runtime > Change runtime"
      " type > GPU; Kaggle: Settings > Accelerator > GPU) - CPU records are valid too, just slower.")

# 3. Data (fetched and checked against the SHA-256 pins), then the run; the table comes at the end.
dataset = ARGS[ARGS.index("--dataset") + 1] if "--dataset" in ARGS else "mnist"
sh(sys.executable, "-m", "runner", "data", "fetch", "--dataset", dataset)
OUT.mkdir(parents=True, exist_ok=True)
started = time.time()
try:
    sh(sys.executable, "-m", "runner", "run", "--out", OUT, *ARGS)
finally:  # whatever happened, show the table of what this notebook recorded and keep the records
    mine = [p for p in OUT.glob("*.json") if p.stat().st_mtime >= started - 1]
    if mine:
        table = subprocess.run([sys.executable, "-m", "runner", "compare", *mine, "--format", "markdown"],
                               capture_output=True, text=True).stdout
        try:
            from IPython.display import Markdown, display
            display(Markdown(table))
        except ImportError:
            print(table)
    # 4. Keep the records: Kaggle keeps /kaggle/working as the notebook's output; Colab offers a zip
    #    download (and Drive with DLBENCH_DRIVE=1); JupyterHub keeps them in your home folder.
    archive = shutil.make_archive(str(OUT), "zip", OUT)
    print(f"dlbench: {len(mine)} record(s) from this run in {OUT} ({archive})")
    if where == "colab":
        from google.colab import files
        files.download(archive)
        if os.environ.get("DLBENCH_DRIVE"):
            from google.colab import drive
            drive.mount("/content/drive")
            shutil.copytree(OUT, "/content/drive/MyDrive/dlbench-results", dirs_exist_ok=True)
            print("dlbench: copied to MyDrive/dlbench-results")
