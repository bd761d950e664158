"""`image`: build, run and list the dlbench images through Docker (or podman's Docker-compatible socket).

    python -m runner image build cpu|cuda [--tag dlbench:cpu] [--engine URL] [--build-arg KEY=VALUE ...] [--no-cache]
    python -m runner image run cpu|cuda [--tag T] [--gpus all] [--results DIR] [--offline] [-- RUN FLAGS...]
    python -m runner image list [--engine URL]
    python -m runner image args cpu|cuda     # the build's arguments as podman flags (scripts/podman.sh reads them)

Engine: --engine, else $DOCKER_HOST, else the default Docker socket (podman: `podman system service`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from runner.cli import EXIT_FAILED, SUMMARIES
from runner.errors import UserError

KINDS = ("cpu", "cuda")


def add_parser(sub) -> None:
    p = sub.add_parser("image", help=SUMMARIES["image"],
                       description="The dlbench images (images/README.md) through a Docker-API engine: Docker,"
                                   " or podman's Docker-compatible socket (podman system service). Engine:"
                                   " --engine, else $DOCKER_HOST, else the default Docker socket.")
    actions = p.add_subparsers(dest="action", metavar="{build,run,list,args}", required=True)

    def common(a, tag=True):
        a.add_argument("kind", choices=KINDS, help="which image: images/KIND/Dockerfile")
        if tag:
            a.add_argument("--tag", help="the image's name (default: dlbench:KIND)")

    b = actions.add_parser("build", help="build images/KIND/Dockerfile (the repository is the context)",
                           description="Build images/KIND/Dockerfile with the repository root as its context;"
                                       " Step i/N lines here, the full output in a log file.")
    common(b)
    b.add_argument("--engine", metavar="URL", help="the engine, e.g. unix:///run/podman/podman.sock")
    b.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE",
                   help="another build argument, or one that replaces dlbench's (repeatable)")
    b.add_argument("--no-cache", action="store_true", help="rebuild every layer")
    b.add_argument("--log-dir", default="results-image/logs", metavar="DIR",
                   help="where the build's full log goes (default: results-image/logs, beside image run's records)")

    r = actions.add_parser("run", help="run the image's `python -m runner` (records in --results)",
                           description="Run the image's entrypoint, `python -m runner RUN FLAGS` (`run` when"
                                       " none), as you (uid:gid), with --results mounted at /results.",
                           epilog="example: python -m runner image run cpu -- --preset smoke --framework torch")
    _run_options(r)
    r.add_argument("kind", choices=KINDS, help="which image")
    # the rest, options of this command included: a `nargs="*"` positional after `kind` would be matched
    # (empty) together with it, and the flags after `--` then rejected as unrecognized (argparse)
    r.add_argument("rest", nargs=argparse.REMAINDER, metavar="-- RUN FLAGS",
                   help="the image's `python -m runner` arguments, after --")

    lst = actions.add_parser("list", help="the dlbench images the engine has: tag, size, created, version, revision")
    lst.add_argument("--engine", metavar="URL", help="the engine (as for build)")

    a = actions.add_parser("args", help="print the build's arguments as podman build flags, one per line")
    common(a)
    a.add_argument("--build-arg", action="append", default=[], metavar="KEY=VALUE")


def _run_options(r) -> None:
    r.add_argument("--tag", help="the image's name (default: dlbench:KIND)")
    r.add_argument("--engine", metavar="URL", help="the engine (as for build)")
    r.add_argument("--gpus", choices=["all"], help="pass the host's NVIDIA GPUs (NVIDIA container toolkit)")
    r.add_argument("--results", default="results-image", metavar="DIR",
                   help="the folder mounted at /results, where the records go (default: ./results-image)")
    r.add_argument("--offline", action="store_true", help="no network in the container (the image carries MNIST)")


def _run_args(args) -> tuple[argparse.Namespace, list[str]]:
    """`image run`'s own options (before or after KIND) and the image's flags (after --). argparse drops a
    `--` right after KIND, so without one the flags are what this command does not know (no runner flag
    is named like these options; no abbreviations)."""
    from runner.cli import Parser

    rest = list(args.rest)
    cut = rest.index("--") if "--" in rest else len(rest)
    mine = Parser(prog="dlbench image run", add_help=False, allow_abbrev=False)
    _run_options(mine)
    args, unknown = mine.parse_known_args(rest[:cut], namespace=args)
    if unknown and cut < len(rest):
        mine.error(f"unrecognized arguments before --: {' '.join(unknown)}")
    return args, unknown + rest[cut + 1:]


def main(args) -> int:
    from runner.cli.run import folder_named
    from runner.launch import images

    if args.action == "args":
        print("\n".join(images.plan(args.kind, args.tag, _pairs(args.build_arg)).podman_flags()))
        return 0
    if args.action == "build":
        folder_named("--log-dir", args.log_dir, "results-image/logs")
        p = images.plan(args.kind, args.tag, _pairs(args.build_arg))  # a bad kind or arg before the engine
        return _build(images, _engine(args.engine), p, args)
    if args.action == "list":
        print(images.render(images.listing(_engine(args.engine))))
        return 0
    args, flags = _run_args(args)
    results = folder_named("--results", args.results, "results-image")  # not "": the current folder as /results
    return images.run(_engine(args.engine), args.tag or f"dlbench:{args.kind}", flags, results, args.gpus, args.offline)


def _engine(url: str | None):
    from runner.launch.engine import client

    return client(url, who="`image`")


def _pairs(words: list[str]) -> dict[str, str]:
    pairs = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or not key:
            raise UserError(f"--build-arg {word!r}: expected KEY=VALUE")
        pairs[key] = value
    return pairs


def _build(images, made, p, args) -> int:
    stamp = time.strftime("%Y%m%dT%H%M%S")
    log = Path(args.log_dir) / f"image-build-{p.kind}-{stamp}.log"
    print(f"image: building {p.tag} from {p.dockerfile} (revision {p.args['REVISION']})", file=sys.stderr)
    done = images.build(made, p, log, no_cache=args.no_cache, echo=lambda line: print(line, file=sys.stderr))
    if not done.ok:
        at = f" at step {done.steps}/{done.total}" if done.total else ""
        hint = f"; {done.hint}" if done.hint else ""
        print(f"image: build of {p.tag} failed{at}: {done.error} (full log: {log}){hint}", file=sys.stderr)
        return EXIT_FAILED
    labels = images.labels(made, p.tag)
    print(f"image: built {p.tag} in {done.seconds:.1f} s ({done.total} steps, {done.cached} from the cache);"
          f" version {labels.get(images.LABEL + 'version', '?')}, revision {labels.get(images.LABEL + 'revision', '?')};"
          f" log: {log}", file=sys.stderr)
    return 0
