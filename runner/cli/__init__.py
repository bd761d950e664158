"""The dlbench command line (also `dlbench`, same as `python -m runner`): one module per subcommand.

    python -m runner                               # = run: the standard workload, every installed framework
    python -m runner run --framework torch --preset smoke
    python -m runner run --framework torch --repeats 5 | --until-stable [--cv-threshold 0.03] [--max-repeats 10]
    python -m runner run --batch-size 128 --set beta2=0.99      # any spec field: its flag, or --set
    python -m runner data fetch|verify [--dataset mnist|fashion|synthetic] [--data-dir DIR]
    python -m runner verify [--framework torch,tensorflow,jax] [--steps 50]
    python -m runner compare results/ [--format markdown|csv|json] [--baseline framework=torch,device=cpu]
    python -m runner compare results/ --view runs|sweep|tune|ensemble|per-sample-grads [--id ID]
    python -m runner report results/ [-o report.html] [--price cuda=2.49] [--plots DIR] [--track mlflow[:URI]]
    python -m runner probe [--json] [--no-frameworks]
    python -m runner run --framework torch --launcher torchrun --nproc 2      # DistributedDataParallel ranks
    python -m runner slurm submit|status|wait|resubmit ... --out SHARED       # the matrix as a Slurm job array
    python -m runner image build|run|list cpu|cuda [--engine URL]             # the images, through Docker/podman
    python -m runner sweep --framework torch,jax --set batch_size=32,64,128 [--option jax.loop=step,scan]
    python -m runner tune --framework torch,jax --trials 20 [--timeout S] [--study NAME] [--pruner median]
    python -m runner ensemble --framework torch,jax --models 1,2,4,8 --arch mlp4   # N models stepped together
    python -m runner per-sample-grads --framework torch,jax,tensorflow --batch-sizes 16,64,256

Only argparse and the spec load here: `--help` stays instant, frameworks load in child processes.
Each subcommand module has `add_parser(subparsers)` and `main(args) -> exit code`.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from runner.errors import UserError

# name -> module under runner.cli; the order is the order of --help
SUBCOMMANDS = {"run": "run", "verify": "verify", "data": "data", "compare": "compare", "report": "report",
               "probe": "probe", "slurm": "slurm", "image": "image", "sweep": "sweep", "sweep-table": "sweep_table",
               "tune": "tune", "tune-table": "tune_table", "ensemble": "ensemble", "per-sample-grads": "per_sample_grads"}
# name -> its line in --help: here, so that the top-level --help (and a parser for one subcommand)
# imports no subcommand module it does not run
SUMMARIES = {
    "run": "run the workload (the default subcommand)",
    "verify": "the parity gate: same weights, batches and math in every framework",
    "data": "fetch or verify a dataset",
    "compare": "records -> the tables they need (runs, sweeps, tuning, micro-benchmarks)",
    "report": "records -> one self-contained HTML page with figures",
    "probe": "describe this machine",
    "slurm": "run the matrix as a Slurm job array; its status; resubmit what is missing",
    "image": "build, run and list the dlbench images (Docker or podman's socket)",
    "sweep": "a grid over spec fields and backend options: one run per point",
    "sweep-table": "the old name of compare --view sweep (one more release)",
    "tune": "an Optuna hyperparameter search per framework, every trial a run",
    "tune-table": "the old name of compare --view tune (one more release)",
    "ensemble": "N models of one architecture stepped together (torch.func, jax.vmap)",
    "per-sample-grads": "per-example gradients: vmap(grad) / pfor vs a loop",
}
EXIT_USAGE, EXIT_FAILED, EXIT_INTERRUPTED = 2, 1, 130


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (the usage is one --help away)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"dlbench: error: {message} (see: {self.prog} --help)\n")


def _module(name: str):
    return importlib.import_module(f"runner.cli.{SUBCOMMANDS[name]}")


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser (only=None), or one whose subcommand `only` is complete and the others only
    named with their summary: main builds that, so a run imports the modules of `run` and nothing of
    tune, slurm or image (only="" names them all, for the top-level --help)."""
    from runner import __version__

    parser = Parser(
        prog="dlbench", description="One standard MNIST training workload, the same in every framework,"
        " timed honestly. With no subcommand, `run`.")
    parser.add_argument("--version", action="version", version=f"dlbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="{" + ",".join(SUBCOMMANDS) + "}",
                                parser_class=Parser)
    for name in SUBCOMMANDS:
        if only is None or name == only:
            _module(name).add_parser(sub)
        else:
            sub.add_parser(name, help=SUMMARIES[name])
    return parser


def command_line(argv: list[str]) -> str:
    """The command as the user gave it (the `argv` given to main, not the process's sys.argv: a call
    `main([...])` records its own command), shell-quoted, for the records."""
    import shlex
    return shlex.join(["python", "-m", "runner", *argv])


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    given = command_line(argv)
    if not argv or (argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help", "--version")):
        argv.insert(0, "run")
    args = build_parser(argv[0] if argv[0] in SUBCOMMANDS else "").parse_args(argv)
    args.command_line = given
    try:
        return _module(args.command).main(args)
    except UserError as e:
        print(f"dlbench: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("dlbench: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
