"""The paired overhead benchmarks (benchmarks/*_overhead.py) run end to end on a tiny synthetic set and
print a ratio line per loop mode. Timing is not asserted: only that every loop ran and was compared."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from conftest import ROOT, has

CASES = {  # script: (the framework module it needs, the loops whose ratio it prints)
    "torch_overhead.py": ("torch", [("runner", "bare"), ("loader", "runner")]),
    "torch_step_overhead.py": ("torch", [("runner-eager", "bare-eager")]),  # on the CPU: EXTRA
    "jax_overhead.py": ("jax", [("runner-step", "bare-step"), ("runner-scan", "bare-scan")]),
    "tf_overhead.py": ("tensorflow", [("runner-step", "bare-step"), ("runner-epoch", "bare-epoch")]),
}

EXTRA = {"torch_step_overhead.py": ["--device", "cpu"]}  # its default is cuda; graph pairs need one


@pytest.mark.slow
@pytest.mark.parametrize("script", CASES)
def test_overhead_benchmark_prints_a_ratio_per_mode(script, synthetic_dir):
    module, pairs = CASES[script]
    if not has(module):
        pytest.skip(f"{module} is not installed")
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--dataset", "synthetic",
                          "--data-dir", str(synthetic_dir), "--limit-train", "640", "--block", "5", "--epochs", "2",
                          *EXTRA.get(script, [])],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "epoch 0 " in out.stdout and "(warm-up)" in out.stdout
    for a, b in pairs:
        # 10 steps in blocks of 5, one steady epoch: two paired blocks
        line = re.search(rf"^.*{re.escape(a)} / {re.escape(b)} = (\d+\.\d+) \[(\d+\.\d+)-(\d+\.\d+)\]  median of 2"
                         r" per-block ratios.*$", out.stdout, re.M)
        assert line, out.stdout
        med, lo, hi = map(float, line.groups())
        assert 0 < lo <= med <= hi


def test_overhead_benchmark_refuses_a_single_epoch(synthetic_dir):
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "jax_overhead.py"), "--dataset", "synthetic",
                          "--data-dir", str(synthetic_dir), "--epochs", "1"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 2 and "--epochs must be >= 2" in out.stderr
