"""`run`: the workload on one or more frameworks, one child process per run, one record each, the table.

    python -m runner run --framework torch --preset smoke
    python -m runner run --framework all --repeats 3 --out dlbench-results/mine
    python -m runner run --framework torch --until-stable --cv-threshold 0.03 --max-repeats 10
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from runner.cli import EXIT_FAILED, EXIT_INTERRUPTED, SUMMARIES, arguments, report, workload
from runner.cli.arguments import DEFAULT_OUT
from runner.errors import UserError

# benchmarks/sampler_overhead.py: no measurable cost at 0.1 s, 60 % slower training at 0.0001 s.
MIN_SAMPLE_INTERVAL = 0.1


def add_parser(sub) -> None:
    p = sub.add_parser("run", help=SUMMARIES["run"],
                       description="Run the standard workload (or a variant) on one or more frameworks,"
                                   " one process per run; write one record per run; print the table.")
    workload.add_arguments(p)
    add_run_arguments(p)
    report.add_track_arguments(p)


def add_run_arguments(p, parity_steps: int = 50, repeats: bool = True) -> None:
    """The flags of how each run is done and kept, shared by `run`, `sweep` and (without the repeat
    flags: a trial is one run) `tune`."""
    if repeats:
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
    p.add_argument("--parity-steps", type=int, default=parity_steps, metavar="K",
                   help="after training, check the first K steps against the float64 reference and record"
                        f" the result (default {parity_steps}; 0 skips it)")
    arguments.add_out(p)
    p.add_argument("--no-table", action="store_true", help="do not print the table at the end")


def main(args) -> int:
    work = workload.resolve(args)
    repeats = repeats_policy(args)
    if args.track:
        from runner.report import export

        for target in args.track:  # a bad target fails before anything trains
            export.parse_target(target)
    sampling, out = run_settings(args)

    from runner.launch import orchestrate

    spec, platform = work.spec, work.platform
    print(f"dlbench: {spec.model} on {spec.dataset}, {spec.epochs} epoch(s), spec {spec.hash[:12]};"
          f" platform {platform['name']} ({platform['source']}), device {work.device}", file=sys.stderr)
    outcomes, interrupted = orchestrate.run_all(
        spec, work.frameworks, repeats=repeats, platform=platform, device=work.device, data_dir=args.data_dir,
        out_dir=out, command=args.command_line, options=work.options, parity_steps=args.parity_steps,
        sampling=sampling, launcher=work.launcher)
    for o in outcomes:
        print(f"{o.framework}: {o.status} -> {o.path}")
    unsaved = [o for o in outcomes if o.path.parent != out]
    for o in unsaved:
        print(f"dlbench: error: the {o.framework} record could not be written to {out}; it is at {o.path}",
              file=sys.stderr)
    from runner.records import collection
    from runner.report import views

    records, _ = collection.load([o.path for o in outcomes])
    if not args.no_table:
        print(views.render("runs", records))
    report.track(records, args)
    if interrupted:
        return EXIT_INTERRUPTED
    failed = any(o.status in orchestrate.FAILING for o in outcomes)
    return EXIT_FAILED if failed or unsaved else 0


def run_settings(args):
    """(Sampling, the --out folder) from the shared run flags, checked (UserError) before anything runs."""
    from runner.request import Sampling

    if not args.sample_interval > 0:
        raise UserError(f"--sample-interval must be > 0, got {args.sample_interval}")
    if args.sample_interval < MIN_SAMPLE_INTERVAL:
        print(f"dlbench: --sample-interval {args.sample_interval:g} is below {MIN_SAMPLE_INTERVAL:g} s, where the"
              f" sampler starts to slow training (measured: 60 % at 0.0001 s); sampling every"
              f" {MIN_SAMPLE_INTERVAL:g} s", file=sys.stderr)
        args.sample_interval = MIN_SAMPLE_INTERVAL
    if args.parity_steps < 0:
        raise UserError(f"--parity-steps must be >= 0, got {args.parity_steps}")
    return Sampling(interval_s=args.sample_interval, write_samples=args.samples), out_dir(args.out)


def folder_named(flag: str, text: str, example: str) -> Path:
    """The folder a flag names. Path("") is ".": an empty value (an unset shell variable) would put
    records, logs or a mount in the current folder, so it is refused."""
    if not text.strip():
        raise UserError(f"{flag} {text!r}: an empty folder name (name a folder, e.g. {flag} {example})")
    return Path(text).expanduser()


def out_dir(text: str) -> Path:
    out = folder_named("--out", text, DEFAULT_OUT)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out {out}: cannot create the folder ({e.strerror})") from None
    if not os.access(out, os.W_OK):
        raise UserError(f"--out {out}: the folder is not writable")
    return out


def repeats_policy(args):
    """The Repeats policy from --repeats / --until-stable / --cv-threshold / --max-repeats (UserError if off)."""
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
