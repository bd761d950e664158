"""`ensemble`: N independent models of one architecture stepped together, per framework; one record each.

    python -m runner ensemble --framework torch,jax --models 1,2,4,8 --arch mlp4|cnn4 [--batch 64]
                              [--iterations 50] [--warmup 5] [--device cuda] [--launcher container] [--out DIR]
    python -m runner ensemble --table results/          # the table of ensemble records already written

What is timed and checked: runner.micro.ensemble (and README.md, "N models in parallel").
"""

from __future__ import annotations

from runner.cli import SUMMARIES, micro


def add_parser(sub) -> None:
    from runner.micro import ARCHS, plan

    p = sub.add_parser("ensemble", help=SUMMARIES["ensemble"],
                       description="Time the forward (fprop) and the gradient (bprop: forward + backward) of N"
                                   " independent models stepped together, for every N; check each model against"
                                   " itself run alone and model 0 against the float64 reference; one record per"
                                   " framework, then the table.")
    p.add_argument("--models", default="1,2,4,8", metavar="N,N,...", help="numbers of models (default 1,2,4,8)")
    p.add_argument("--arch", choices=ARCHS, default="mlp4",
                   help="mlp4: 784-512-512-512-10 MLP; cnn4: conv16-pool-conv32-pool-fc128-fc10 (default mlp4)")
    p.add_argument("--batch", type=int, default=64, help="samples per model per call (default 64)")
    p.add_argument("--iterations", type=int, default=50, help="timed calls per N and operation (default 50)")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls before them (default 5)")
    micro.add_arguments(p, plan.frameworks_of(plan.ENSEMBLE))


def main(args) -> int:
    from runner.micro import plan

    if args.table:
        return micro.print_table(args.table, plan.ENSEMBLE, args.format)
    models = plan.parse_sizes("--models", args.models)
    spec, settings = plan.ensemble(args.arch, models, args.batch, args.iterations, args.warmup, args.dataset,
                                   args.seed)
    frameworks = plan.frameworks_for(args.framework, plan.frameworks_of(plan.ENSEMBLE), "ensemble")
    return micro.run(args, plan.ENSEMBLE, spec, settings, frameworks)
