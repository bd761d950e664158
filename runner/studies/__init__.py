"""Timed operation studies that are not the training workload.

    python -m runner ensemble --framework torch,jax --models 1,2,4,8 --arch mlp4|cnn4
    python -m runner per-sample-grads --framework torch,jax,tensorflow --batch-sizes 16,64,256

N models stepped together (`ensemble`) and per-example gradients (`per_sample_grads`). Each runs in
a child process as its own job (runner.launch.child) and leaves a record of kind "ensemble" /
"per_sample_grads" (schema v5's `study` block). The parent side (the grid of sizes, the launcher) is
runner.experiments; the tables are runner.report.studies.
"""

# What the command line needs before any study runs (`--help` imports only this): the architectures
# the ensemble offers (defined in runner.workload.models) and, per study, the frameworks it is written
# for and the module holding each one's code (imported in the child, where it imports the framework).
ARCHS = ("mlp4", "cnn4")
FRAMEWORKS = {"ensemble": {"torch": "runner.studies.torch_ops", "jax": "runner.studies.jax_ops"},
              "per_sample_grads": {"torch": "runner.studies.torch_ops", "jax": "runner.studies.jax_ops",
                                   "tensorflow": "runner.studies.tf_ops"}}
