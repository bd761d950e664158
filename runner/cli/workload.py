"""The arguments `run` and `verify` share: which frameworks, where, which spec, which launcher.

    python -m runner run --framework torch,jax --platform cpu --epochs 5 --set beta2=0.99
    python -m runner verify --framework tensorflow --option tensorflow.loop=step

Spec overrides are made from the Spec dataclass itself (runner.workload.spec: FIELDS, FIELD_HELP):
one flag per field, plus `--set FIELD=VALUE` for scripts. Any override changes the spec hash.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

from runner.errors import SpecError, UserError


def _field_type(name: str):
    from runner.workload.spec import parse_field

    def parse(text: str):
        try:
            return parse_field(name, text)
        except SpecError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
    parse.__name__ = name  # argparse names the type in its messages
    return parse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from runner.cli import arguments
    from runner.workload.spec import FIELD_HELP, FIELDS, FLAG_ALIASES, PRESETS

    p.add_argument("--framework", default="all",
                   help="one name, a comma-separated list, or 'all' (default: every installed framework)")
    arguments.add_placement(p)
    p.add_argument("--nproc", type=int, metavar="N",
                   help="with --launcher torchrun: ranks per node (default 2; the world size must divide the batch)")
    p.add_argument("--nnodes", type=int, metavar="N",
                   help="with --launcher torchrun: nodes, each running torchrun under srun (default 1)")
    p.add_argument("--option", action="append", default=[], metavar="FRAMEWORK.KEY=VALUE",
                   help="a backend option, recorded with the run (repeatable): torch.step=eager|graph|compile"
                        " (graph: CUDA only), tensorflow.loop=epoch|step,"
                        " tensorflow.jit_compile=off|on, jax.loop=step|scan, jax.devices=1|2|4|8|all (data-parallel);"
                        " loader mode (README): torch.loader=resident|dataloader, tensorflow.loader=resident|tfdata"
                        " (with tensorflow.loop=step), jax.loader=resident|host, FRAMEWORK.workers=0|1|2|4|8|16")
    p.add_argument("--preset", choices=list(PRESETS), default="standard",
                   help="standard: the spec as designed; smoke: 1 epoch, 2048/512 samples, no target")
    group = p.add_argument_group("spec overrides (any override changes the spec hash)")
    for name in FIELDS:
        flags = ["--" + name.replace("_", "-"), *FLAG_ALIASES.get(name, ())]
        # SUPPRESS: absent unless given, so `--target-accuracy none` (None) still counts as given
        group.add_argument(*flags, dest=f"spec_{name}", type=_field_type(name), metavar=name.upper(),
                           default=argparse.SUPPRESS, help=FIELD_HELP[name])
    group.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                       help="any spec field by its name, e.g. --set beta2=0.99 (repeatable)")
    arguments.add_data_dir(p)


def overrides(args) -> dict:
    """The spec fields the user set, by flag or by --set (both may not name the same field)."""
    from runner.workload.spec import FIELDS, parse_field

    chosen = {name: getattr(args, f"spec_{name}") for name in FIELDS if hasattr(args, f"spec_{name}")}
    flagged = set(chosen)
    for item in args.set:
        name, eq, value = item.partition("=")
        name = name.strip().replace("-", "_")
        if not eq or not name:
            raise UserError(f"--set {item!r}: expected FIELD=VALUE, e.g. --set batch_size=128")
        if name in flagged:
            raise UserError(f"--set {item!r}: {name} is already set by --{name.replace('_', '-')}")
        chosen[name] = parse_field(name, value.strip())
    return chosen


@dataclass(frozen=True)
class Workload:
    spec: object
    frameworks: list
    platform: dict
    device: str
    options: dict
    launcher: object


def resolve(args) -> Workload:
    """The workload the arguments describe; UserError (one line, exit 2) if anything is off."""
    from runner import backends
    from runner.launch import launchers
    from runner.machine import platforms
    from runner.workload.spec import make_spec

    spec = make_spec(args.preset, **overrides(args))
    frameworks = backends.parse_frameworks(args.framework)
    platform = platforms.resolve(args.platform)
    device = platforms.device_for(platform["name"], args.device)
    if args.framework.strip() == "all":  # every installed one; named ones run and report why if they can't
        for name in [f for f in frameworks if not backends.installed(f)]:
            hint = backends.install_hint(name)  # the first step; a long recipe stays in README / the record
            short = hint.split(";")[0] + ("; the rest: README.md" if ";" in hint else "")
            print(f"[{name}] not installed, skipped ({short})", file=sys.stderr)
        frameworks = [f for f in frameworks if backends.installed(f)]
        if not frameworks:
            raise UserError(f"no framework is installed: {backends.install_hint('torch')}")
    # What the platform needs, per framework, before anything starts (m1: MPS / Metal, one line each);
    # a framework that cannot run on the device asked for is left out, and said so.
    planned = platforms.preflight(platform["name"], frameworks, args.device, log=lambda m: print(m, file=sys.stderr))
    frameworks = [f for f in frameworks if planned.get(f, device) is not None]
    if not frameworks:
        raise UserError(f"no framework can run on device {device} here (see the lines above)")
    options = backends.parse_option_args(args.option, frameworks)
    backends.check_devices({f: options.get(f, {}) for f in frameworks}, lambda: platforms.on_cuda(device))
    return Workload(spec, frameworks, platform, device, options, _launcher(args, spec, frameworks, device))


def _launcher(args, spec, frameworks, device):
    """The launcher with its settings from the flags, checked against the workload before anything starts."""
    from runner.launch import launchers

    settings = {key: value for key, value in (("nproc_per_node", getattr(args, "nproc", None)),
                                              ("nnodes", getattr(args, "nnodes", None))) if value is not None}
    if settings and args.launcher != "torchrun":
        raise UserError("--nproc and --nnodes need --launcher torchrun")
    launcher = launchers.from_args(args.launcher, args.launcher_setting, **settings)
    launcher.preflight()
    if args.launcher == "torchrun":
        if frameworks != ["torch"]:
            raise UserError(f"--launcher torchrun starts PyTorch ranks: use --framework torch, not"
                            f" {','.join(frameworks)} (JAX spreads over devices itself: --option jax.devices=N)")
        launcher.check(spec)
    if args.command != "slurm":  # started from here (a submission starts on its nodes and checks there)
        launcher.check_here(spec, device)
    return launcher
