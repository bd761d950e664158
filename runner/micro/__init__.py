"""Micro-benchmarks: timed operations that are not the training workload, one feature folder.

    python -m runner ensemble --framework torch,jax --models 1,2,4,8 --arch mlp4|cnn4
    python -m runner per-sample-grads --framework torch,jax,tensorflow --batch-sizes 16,64,256

N models stepped together (`ensemble`) and per-example gradients (`per_sample_grads`). Each runs in
a child process as its own job (runner.launch.child) and leaves a record of kind "ensemble" /
"per_sample_grads" (schema v5's `study` block: the record's name for a micro-benchmark's settings and
results). Here: the parent side (`plan`: the sizes checked, the spec and settings; `parent`: one child
per framework), the child side (`job`: the body in runner.jobs.frame; `ensemble`, `per_sample_grads`:
what is timed and checked; `timing`, `checks`; each framework's code in `torch_ops`, `jax_ops`,
`tf_ops`). Their table is runner.report.micro, their command line runner.cli.micro.
"""

# What the command line needs before any child runs (`--help` imports only this): the architectures
# the ensemble offers (models of runner.workload.models, named here once) and, per job, the frameworks
# it is written for and the module holding each one's code (imported in the child, where it imports
# the framework).
ARCHS = ("mlp4", "cnn4")
FRAMEWORKS = {"ensemble": {"torch": "runner.micro.torch_ops", "jax": "runner.micro.jax_ops"},
              "per_sample_grads": {"torch": "runner.micro.torch_ops", "jax": "runner.micro.jax_ops",
                                   "tensorflow": "runner.micro.tf_ops"}}
