"""The dlbench command line (also `dlbench`, same as `python -m runner`).

    python -m runner                               # = run: the standard workload, every installed framework
    python -m runner run --framework torch --preset smoke
    python -m runner run --framework torch --repeats 5 | --until-stable [--cv-threshold 0.03] [--max-repeats 10]
    python -m runner data fetch|verify [--dataset mnist|fashion|synthetic] [--data-dir DIR]
    python -m runner verify [--framework torch,tensorflow,jax] [--steps 50]
    python -m runner compare results/ [--format markdown|csv|json] [--baseline framework=torch,device=cpu]
    python -m runner report results/ [-o report.html] [--price cuda=2.49] [--plots DIR] [--track mlflow[:URI]]
    python -m runner probe [--json] [--no-frameworks]

Only argparse and the spec load here: `--help` stays instant, frameworks load in worker processes.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from pathlib import Path

from runner.errors import UserError

SUBCOMMANDS = ("run", "verify", "data", "compare", "report", "probe")
EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage is one --help away)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"dlbench: error: {message} (see: {self.prog} --help)\n")


def _add_workload(p, framework_help: str) -> None:
    """The arguments `run` and `verify` share: which frameworks, where, and which spec."""
    from runner.machine import platforms
    from runner.data.catalog import DATASETS
    from runner.workload.models import MODELS
    from runner.workload.spec import PRESETS

    p.add_argument("--framework", default="all", help=framework_help)
    p.add_argument("--platform", choices=list(platforms.PLATFORMS), help="default: $DLBENCH_PLATFORM, else detected")
    p.add_argument("--device", choices=platforms.DEVICES, help="default: the platform's (auto = cuda > mps > cpu)")
    p.add_argument("--option", action="append", default=[], metavar="FRAMEWORK.KEY=VALUE",
                   help="a backend option, recorded with the run (repeatable): tensorflow.loop=epoch|step,"
                        " tensorflow.jit_compile=off|on, jax.loop=step|scan")
    p.add_argument("--preset", choices=list(PRESETS), default="standard",
                   help="standard: the spec as designed; smoke: 1 epoch, 2048/512 samples, no target")
    spec = p.add_argument_group("spec overrides (any override changes the spec hash)")
    spec.add_argument("--model", choices=list(MODELS))
    spec.add_argument("--dataset", choices=list(DATASETS))
    spec.add_argument("--epochs", type=int)
    spec.add_argument("--batch-size", type=int)
    spec.add_argument("--lr", dest="learning_rate", type=float, help="Adam learning rate")
    spec.add_argument("--seed", type=int)
    spec.add_argument("--target-accuracy", type=_target, help="test accuracy for time-to-target, or 'none'")
    spec.add_argument("--limit-train", type=int, help="train on the first N samples only")
    spec.add_argument("--limit-test", type=int, help="evaluate on the first N samples only")
    p.add_argument("--data-dir", help="dataset folder (default: $DLBENCH_DATA_DIR, else the user cache)")


def _add_run(sub) -> None:
    p = sub.add_parser("run", help="run the workload (the default subcommand)",
                       description="Run the standard workload (or a variant) on one or more frameworks,"
                                   " one process per run; write one record per run; print the table.")
    _add_workload(p, "one name, a comma-separated list, or 'all' (default: every installed framework)")
    p.add_argument("--repeats", type=int, help="independent runs per framework, each its own process (default 1;"
                                               " the minimum under --until-stable, default 3 there)")
    p.add_argument("--until-stable", action="store_true",
                   help="add runs until the coefficient of variation of the runs' steady epoch times is below"
                        " --cv-threshold, or --max-repeats runs")
    p.add_argument("--cv-threshold", type=float, metavar="CV",
                   help="with --until-stable: stop when CV < this (default 0.03 = 3 %%)")
    p.add_argument("--max-repeats", type=int, metavar="N",
                   help="with --until-stable: at most N runs per framework (default 10)")
    p.add_argument("--sample-interval", type=float, default=1.0, metavar="S",
                   help="seconds between resource samples (CPU, RSS, GPU utilization/memory/power/clock;"
                        " default 1.0)")
    p.add_argument("--samples", action="store_true",
                   help="also write every resource sample beside the record (RECORD.samples.jsonl)")
    p.add_argument("--parity-steps", type=int, default=50, metavar="K",
                   help="after training, check the first K steps against the float64 reference and record"
                        " the result (default 50; 0 skips it)")
    p.add_argument("--out", default="results", help="folder for the records (default: results)")
    p.add_argument("--no-table", action="store_true", help="do not print the table at the end")


def _add_verify(sub) -> None:
    p = sub.add_parser("verify", help="the parity gate: same weights, batches and math in every framework",
                       description="For every framework: load the reference weights, take the first K steps"
                                   " of epoch 0, and compare step 1's loss, logits, gradient and updated"
                                   " weights and every step's loss with a float64 NumPy reference. Prints a"
                                   " table; exits 1 if any framework fails.")
    _add_workload(p, "one name, a comma-separated list, or 'all' (default: every installed framework)")
    p.add_argument("--steps", type=int, default=50, metavar="K", help="training steps to compare (default 50)")
    p.add_argument("--json", action="store_true", help="print the results as JSON")


def _target(text: str):
    if text.lower() == "none":
        return "none"
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number or 'none': {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    from runner import __version__
    from runner.data.catalog import DATASETS

    parser = _Parser(
        prog="dlbench", description="One standard MNIST training workload, the same in every framework,"
        " timed honestly. With no subcommand, `run`.")
    parser.add_argument("--version", action="version", version=f"dlbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}")
    _add_run(sub)
    _add_verify(sub)

    data = sub.add_parser("data", help="fetch or verify a dataset",
                          description="Get the dataset bytes (cache/folder, public mirrors, offline"
                                      " sources) and check them against the pinned SHA-256.")
    data.add_argument("action", choices=("fetch", "verify"))
    data.add_argument("--dataset", choices=list(DATASETS), default="mnist")
    data.add_argument("--data-dir", help="dataset folder (default: $DLBENCH_DATA_DIR, else the user cache)")

    compare = sub.add_parser("compare", help="records -> one comparison table",
                             description="Merge records (files or folders) into one table per spec.")
    compare.add_argument("paths", nargs="+", metavar="PATH")
    compare.add_argument("--format", choices=("markdown", "csv", "json"), default="markdown")
    compare.add_argument("--baseline", metavar="KEY=VALUE[,KEY=VALUE...]",
                         help="the row the others are divided by (s/epoch ratio with a 95%% CI), in each spec's"
                              " table; keys: framework, device, platform, hardware (a substring), version,"
                              " options; e.g. framework=torch,device=cpu")
    compare.add_argument("--noisy-cv", type=float, metavar="CV",
                         help="mark rows whose steady s/epoch varies more than this over runs (default 0.05)")

    from runner.report.command import add_parser as add_report  # argparse only: --help stays instant

    add_report(sub)
    probe = sub.add_parser("probe", help="describe this machine",
                           description="What dlbench sees of this machine: CPU, memory, GPUs, OS, container,"
                                       " notebook, scheduler, cloud, and how each installed framework was"
                                       " built (imported in a process of its own). Unreadable fields are"
                                       " listed with the reason.")
    probe.add_argument("--json", action="store_true", help="print JSON")
    probe.add_argument("--no-frameworks", action="store_true",
                       help="skip the frameworks (importing them takes seconds)")
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "run")
    args = build_parser().parse_args(argv)
    try:
        return {"run": cmd_run, "verify": cmd_verify, "data": cmd_data, "compare": cmd_compare, "report": cmd_report, "probe": cmd_probe}[args.command](args)
    except UserError as e:
        print(f"dlbench: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dlbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _workload(args):
    """(spec, frameworks, platform, device, options) from the shared arguments; UserError if bad."""
    from runner import backends
    from runner.machine import platforms
    from runner.workload.spec import make_spec

    overrides = {k: getattr(args, k) for k in ("model", "dataset", "epochs", "batch_size", "learning_rate",
                                                "seed", "limit_train", "limit_test", "target_accuracy")}
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides.get("target_accuracy") == "none":
        overrides["target_accuracy"] = None
    spec = make_spec(args.preset, **overrides)
    frameworks = backends.parse_frameworks(args.framework)
    platform = platforms.resolve(args.platform)
    device = platforms.device_for(platform["name"], args.device)
    if args.framework.strip() == "all":  # every installed one; named ones run and report why if they can't
        for name in [f for f in frameworks if not backends.installed(f)]:
            print(f"[{name}] not installed, skipped ({backends.install_hint(name)})", file=sys.stderr)
        frameworks = [f for f in frameworks if backends.installed(f)]
        if not frameworks:
            raise UserError(f"no framework is installed: {backends.install_hint('torch')}")
    options = backends.parse_option_args(args.option, frameworks)
    return spec, frameworks, platform, device, options


def cmd_run(args) -> int:
    spec, frameworks, platform, device, options = _workload(args)
    repeats = _repeats(args)
    if not args.sample_interval > 0:
        raise UserError(f"--sample-interval must be > 0, got {args.sample_interval}")
    if args.parity_steps < 0:
        raise UserError(f"--parity-steps must be >= 0, got {args.parity_steps}")
    out = Path(args.out)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot create the folder ({e.strerror})") from None
    if not os.access(out, os.W_OK):
        raise UserError(f"--out {out}: the folder is not writable")

    from runner.launch import orchestrate

    print(f"dlbench: {spec.model} on {spec.dataset}, {spec.epochs} epoch(s), spec {spec.hash[:12]};"
          f" platform {platform['name']} ({platform['source']}), device {device}", file=sys.stderr)
    command = " ".join(shlex.quote(a) for a in ["python", "-m", "runner", *sys.argv[1:]])
    outcomes, interrupted = orchestrate.run_all(
        spec, frameworks, repeats=repeats, platform=platform, device=device, data_dir=args.data_dir,
        out_dir=out, command=command, options=options, parity_steps=args.parity_steps,
        sample_interval=args.sample_interval, write_samples=args.samples)
    for o in outcomes:
        print(f"{o.framework}: {o.status} -> {o.path}")
    if not args.no_table:
        from runner.report import compare

        records, _ = compare.load([o.path for o in outcomes])
        print(compare.render(compare.rows(records)))
    if interrupted:
        return EXIT_INTERRUPTED
    return EXIT_FAILED if any(o.status in ("failed", "diverged", "unavailable") for o in outcomes) else 0


def _repeats(args):
    from runner.launch.orchestrate import Repeats

    if not args.until_stable:
        for flag in ("cv_threshold", "max_repeats"):
            if getattr(args, flag) is not None:
                raise UserError(f"--{flag.replace('_', '-')} needs --until-stable")
        repeats = 1 if args.repeats is None else args.repeats
        if repeats < 1:
            raise UserError(f"--repeats must be >= 1, got {repeats}")
        return Repeats(minimum=repeats)
    minimum = 3 if args.repeats is None else args.repeats
    default = Repeats()
    cv_threshold = default.cv_threshold if args.cv_threshold is None else args.cv_threshold
    maximum = default.maximum if args.max_repeats is None else args.max_repeats
    if minimum < 2:
        raise UserError(f"--until-stable needs --repeats >= 2 (a CV needs two runs), got {minimum}")
    if maximum < minimum:
        raise UserError(f"--max-repeats ({maximum}) is below --repeats ({minimum})")
    if not cv_threshold > 0:  # CV is a ratio (0.03 = 3 %); two runs can reach sqrt(2), more runs more
        raise UserError(f"--cv-threshold must be > 0 (0.03 = 3 %), got {cv_threshold}")
    return Repeats(minimum=minimum, until_stable=True, cv_threshold=cv_threshold, maximum=maximum)


def cmd_verify(args) -> int:
    import json

    from runner.parity import verify

    spec, frameworks, _, device, options = _workload(args)
    if args.steps < 1:
        raise UserError(f"--steps must be >= 1, got {args.steps}")
    print(f"dlbench verify: {spec.model} on {spec.dataset}, spec {spec.hash[:12]}, device {device}",
          file=sys.stderr)
    results = verify.run(spec, frameworks, device, args.data_dir, args.steps, options)
    print(json.dumps(results, indent=1) if args.json else verify.table(results))
    explicit = args.framework.strip() != "all"
    bad = [r for r in results if r["parity"]["status"] in ("fail", "error")
           or (explicit and r["parity"]["status"] == "unavailable")]
    return EXIT_FAILED if bad else 0


def cmd_data(args) -> int:
    from runner.data import store
    from runner.data.catalog import DATASETS

    if args.action == "fetch":
        folder = store.ensure(args.dataset, args.data_dir)
        print(f"{args.dataset}: all files verified in {folder}")
        return 0
    folder = store.folder_for(args.dataset, args.data_dir)
    bad = 0
    for s in store.verify(DATASETS[args.dataset], folder):
        bad += s.state != "ok"
        detail = "" if s.state == "ok" else f" (expected {s.file.sha256}, got {s.actual or 'no file'})"
        print(f"{s.state:8} {folder / s.file.name}{detail}")
    if bad:
        print(f"dlbench: error: {bad} file(s) missing or not matching their pins; run: python -m runner"
              f" data fetch --dataset {args.dataset}", file=sys.stderr)
    return EXIT_FAILED if bad else 0


def cmd_compare(args) -> int:
    from runner.report import compare

    if args.noisy_cv is None:
        args.noisy_cv = compare.NOISY_CV
    if not args.noisy_cv >= 0:
        raise UserError(f"--noisy-cv must be >= 0, got {args.noisy_cv}")
    if args.baseline is not None:
        compare.parse_baseline(args.baseline)  # bad syntax fails before any file is read
    try:
        records, skipped = compare.load(args.paths)
    except FileNotFoundError as e:
        raise UserError(str(e)) from None
    for path, reason in skipped:
        print(f"dlbench: skipped {path}: {reason}", file=sys.stderr)
    if skipped:
        print(f"dlbench: {len(records)} record(s) read, {len(skipped)} file(s) skipped", file=sys.stderr)
    print(compare.render(compare.rows(records, baseline=args.baseline, noisy_cv=args.noisy_cv), args.format))
    return 0


def cmd_report(args) -> int:
    from runner.report import command

    return command.run(args)


def cmd_probe(args) -> int:
    import json

    from runner.machine import probe

    info = probe.probe(frameworks=not args.no_frameworks)
    print(json.dumps(info, indent=1) if args.json else probe.render(info))
    return 0
