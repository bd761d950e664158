"""`per-sample-grads`: per-example gradients of the LeNet-5 loss, vectorized vs a loop, per framework.

    python -m runner per-sample-grads --framework torch,jax,tensorflow --batch-sizes 16,64,256
                                      [--iterations 20] [--warmup 3] [--dataset synthetic] [--out DIR]
    python -m runner per-sample-grads --table results/   # the table of per-sample records already written

What is timed and checked: runner.studies.per_sample_grads (and README.md, "Per-sample gradients").
"""

from __future__ import annotations

from runner.cli import SUMMARIES, studies


def add_parser(sub) -> None:
    from runner.experiments import per_sample

    p = sub.add_parser("per-sample-grads", help=SUMMARIES["per-sample-grads"],
                       description="Time the per-example gradients of the LeNet-5 loss over a batch, vectorized"
                                   " (torch.func.vmap(grad), jax.vmap(jax.grad) under jit, TensorFlow's pfor"
                                   " jacobian) and as a loop of single-example gradients, for every batch size;"
                                   " check them against the loop and the float64 reference; one record per"
                                   " framework, then the table.")
    p.add_argument("--batch-sizes", default="16,64,256", metavar="B,B,...", help="batch sizes (default 16,64,256)")
    p.add_argument("--iterations", type=int, default=20, help="timed calls per batch size and method (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before them (default 3)")
    studies.add_arguments(p, per_sample.FRAMEWORKS)


def main(args) -> int:
    from runner.experiments import per_sample
    from runner.experiments import studies as parent

    if args.table:
        return studies.print_table(args.table, per_sample.JOB, args.format)
    sizes = parent.parse_sizes("--batch-sizes", args.batch_sizes)
    spec, settings = per_sample.plan(sizes, args.iterations, args.warmup, args.dataset, args.seed)
    frameworks = parent.frameworks_for(args.framework, per_sample.FRAMEWORKS, "per-sample-grads")
    return studies.run(args, per_sample.JOB, spec, settings, frameworks)
