"""runner.console: what a child shows the user, and what it keeps in its log."""

import logging
import subprocess
import sys

from conftest import ROOT


def test_a_frameworks_log_records_without_a_handler_go_to_the_log_not_the_terminal(tmp_path):
    """JAX's CUDA plugin, finding no GPU, logs "Jax plugin configuration error" with a traceback
    through logging's last resort: in the CUDA image on a CPU machine that reached the terminal."""
    log = tmp_path / "run.log"
    code = ("import logging, sys\n"
            "from runner import console\n"
            f"with console.framework_output_to({str(log)!r}):\n"
            "    print('[jax/cpu] epoch 1/1', file=sys.stderr)\n"
            "    try:\n"
            "        raise RuntimeError('cuInit(0) failed')\n"
            "    except RuntimeError:\n"
            "        logging.getLogger('jax._src.xla_bridge').exception('Jax plugin configuration error')\n"
            "logging.getLogger('after').warning('outside the run: the terminal again')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "[jax/cpu] epoch 1/1\noutside the run: the terminal again\n"
    text = log.read_text()
    assert "Jax plugin configuration error" in text and "RuntimeError: cuInit(0) failed" in text
    assert logging.lastResort is not None
