"""Timed operation studies that are not the training workload: N models stepped together
(`ensemble`) and per-example gradients (`per_sample_grads`). Each runs in a child process as its own
job (runner.launch.child) and leaves a record of kind "ensemble" / "per_sample_grads" (schema v5's
`study` block). The parent side (the grid of sizes, the launcher, the table) is runner.experiments.
"""
