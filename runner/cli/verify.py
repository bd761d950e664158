"""`verify`: the parity gate for every framework, each in a child process of its own; one table.

    python -m runner verify                                  # every installed framework, 50 steps
    python -m runner verify --framework torch,jax --steps 20 --dataset synthetic

Exit status 0 only if every framework passes; a framework that cannot run here is listed and fails
the gate only if it was named explicitly.
"""

from __future__ import annotations

import json
import sys

from runner.cli import EXIT_FAILED, SUMMARIES, workload
from runner.errors import UserError

DEFAULT_STEPS = 50


def add_parser(sub) -> None:
    p = sub.add_parser("verify", help=SUMMARIES["verify"],
                       description="For every framework: load the reference weights, take the first K steps"
                                   " of epoch 0, and compare step 1's loss, logits, gradient and updated"
                                   " weights and every step's loss with a float64 NumPy reference. Prints a"
                                   " table; exits 1 if any framework fails.")
    workload.add_arguments(p)
    p.add_argument("--steps", type=int, metavar="K", help="training steps of epoch 0 to compare, at most one epoch's (default 50,"
                        " or the epoch's steps where it has fewer)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def main(args) -> int:
    from runner.launch import orchestrate
    from runner.parity import verify

    work = workload.resolve(args)
    limit = work.spec.steps_per_epoch
    if args.steps is None:  # not given: 50, or the whole epoch where it is shorter (the smoke preset: 32)
        args.steps = min(DEFAULT_STEPS, limit)
    if args.steps < 1:
        raise UserError(f"--steps must be >= 1, got {args.steps}")
    # The gate compares the first K steps of epoch 0 (runner.parity.gate): more cannot be checked, and
    # cutting them silently would print a pass for fewer steps than were asked for.
    if args.steps > limit:
        raise UserError(f"--steps {args.steps} exceeds the {limit} steps of one epoch here ({work.spec.n_train}"
                        f" training samples / batch {work.spec.batch_size}); the parity check compares steps of"
                        f" epoch 0: use --steps <= {limit}")
    print(f"dlbench verify: {work.spec.model} on {work.spec.dataset}, spec {work.spec.hash[:12]},"
          f" device {work.device}", file=sys.stderr)
    results = orchestrate.verify_all(work.spec, work.frameworks, work.device, args.data_dir, args.steps, work.options,
                         launcher=work.launcher)
    print(json.dumps(results, indent=1) if args.json else verify.table(results))
    explicit = args.framework.strip() != "all"
    bad = [r for r in results if r["parity"]["status"] in ("fail", "error")
           or (explicit and r["parity"]["status"] == "unavailable")]
    return EXIT_FAILED if bad else 0
