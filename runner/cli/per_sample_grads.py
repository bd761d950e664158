"""`per-sample-grads`: per-example gradients of the LeNet-5 loss, vectorized vs a loop, per framework.

    python -m runner per-sample-grads --framework torch,jax,tensorflow --batch-sizes 16,64,256
                                      [--iterations 20] [--warmup 3] [--dataset synthetic] [--out DIR]
    python -m runner per-sample-grads --table results/   # the table of per-sample records already written

What is timed and checked: runner.micro.per_sample_grads (and README.md, "Per-sample gradients").
"""

from __future__ import annotations

from runner.cli import SUMMARIES, micro


def add_parser(sub) -> None:
    from runner.micro import plan

    p = sub.add_parser("per-sample-grads", help=SUMMARIES["per-sample-grads"],
                       description="Time the per-example gradients of the LeNet-5 loss over a batch, vectorized"
                                   " (torch.func.vmap(grad), jax.vmap(jax.grad) under jit, TensorFlow's pfor"
                                   " jacobian) and as a loop of single-example gradients, for every batch size;"
                                   " check them against the loop and the float64 reference; one record per"
                                   " framework, then the table.")
    p.add_argument("--batch-sizes", default="16,64,256", metavar="B,B,...", help="batch sizes (default 16,64,256)")
    p.add_argument("--iterations", type=int, default=20, help="timed calls per batch size and method (default 20)")
    p.add_argument("--warmup", type=int, default=3, help="untimed calls before them (default 3)")
    micro.add_arguments(p, plan.frameworks_of(plan.PER_SAMPLE))


def main(args) -> int:
    from runner.micro import plan

    if args.table:
        return micro.print_table(args.table, plan.PER_SAMPLE, args.format)
    sizes = plan.parse_sizes("--batch-sizes", args.batch_sizes)
    spec, settings = plan.per_sample(sizes, args.iterations, args.warmup, args.dataset, args.seed)
    frameworks = plan.frameworks_for(args.framework, plan.frameworks_of(plan.PER_SAMPLE), "per-sample-grads")
    return micro.run(args, plan.PER_SAMPLE, spec, settings, frameworks)
