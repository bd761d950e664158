"""`verify`: the parity gate for every framework, each in a child process of its own; one table.

    python -m runner verify                                  # every installed framework, 50 steps
    python -m runner verify --framework torch,jax --steps 20 --dataset synthetic

Exit status 0 only if every framework passes; a framework that cannot run here is listed and fails
the gate only if it was named explicitly.
"""

from __future__ import annotations

import json
import sys

from runner.cli import EXIT_FAILED, workload
from runner.errors import UserError


def add_parser(sub) -> None:
    p = sub.add_parser("verify", help="the parity gate: same weights, batches and math in every framework",
                       description="For every framework: load the reference weights, take the first K steps"
                                   " of epoch 0, and compare step 1's loss, logits, gradient and updated"
                                   " weights and every step's loss with a float64 NumPy reference. Prints a"
                                   " table; exits 1 if any framework fails.")
    workload.add_arguments(p)
    p.add_argument("--steps", type=int, default=50, metavar="K", help="training steps to compare (default 50)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def main(args) -> int:
    from runner.launch import orchestrate
    from runner.parity import verify

    work = workload.resolve(args)
    if args.steps < 1:
        raise UserError(f"--steps must be >= 1, got {args.steps}")
    print(f"dlbench verify: {work.spec.model} on {work.spec.dataset}, spec {work.spec.hash[:12]},"
          f" device {work.device}", file=sys.stderr)
    results = orchestrate.verify_all(work.spec, work.frameworks, work.device, args.data_dir, args.steps, work.options,
                         launcher=work.launcher)
    print(json.dumps(results, indent=1) if args.json else verify.table(results))
    explicit = args.framework.strip() != "all"
    bad = [r for r in results if r["parity"]["status"] in ("fail", "error")
           or (explicit and r["parity"]["status"] == "unavailable")]
    return EXIT_FAILED if bad else 0
