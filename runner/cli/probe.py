"""`probe`: what dlbench sees of this machine (the same facts every record carries).

    python -m runner probe [--json] [--no-frameworks]
"""

from __future__ import annotations

from runner.cli import SUMMARIES


def add_parser(sub) -> None:
    p = sub.add_parser("probe", help=SUMMARIES["probe"],
                       description="What dlbench sees of this machine: CPU, memory, GPUs, OS, container,"
                                   " notebook, scheduler, cloud, and how each installed framework was"
                                   " built (imported in a process of its own). Unreadable fields are"
                                   " listed with the reason.")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--no-frameworks", action="store_true", help="skip the frameworks (importing them takes seconds)")


def main(args) -> int:
    import json

    from runner.machine import probe

    info = probe.probe(frameworks=not args.no_frameworks)
    print(json.dumps(info, indent=1) if args.json else probe.render(info))
    return 0
