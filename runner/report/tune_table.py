"""The tuning table: per study, how each framework's search went and its best trials. Pure functions.

    python -m runner tune ...                              # printed at the end
    python -m runner compare results/tune --view tune [--id NAME] [--top 5] [--format markdown|csv|json]

From the trials' records (experiment.kind tune; the study name is STUDY-FRAMEWORK): per framework the
trials that count toward --trials, how many completed, were pruned or failed (experiment.state), how
many were cut short (status interrupted: Ctrl-C, a crash or a signal; tune runs another in their
place, as they count for nothing in the study either), the wall time of all of them (cut short
ones too: time spent) and of the first N, N being the fewest trials any framework of the study has
(the same number of trials is the fair comparison of how long a search takes), and the best K
completed trials by best test accuracy (ties: the faster to target, then the shorter run) with their
parameters, time to target and wall time.
"""

from __future__ import annotations

from collections import defaultdict

from runner.report.tables import csv_text, json_text, markdown, markdown_cell, num, time_to_target

STATES = ("complete", "pruned", "fail")


def trial_records(recs: list[dict], study: str | None = None) -> list[dict]:
    """The tuning trials' records; `study`: only those of STUDY (every framework's STUDY-FRAMEWORK)."""
    out = []
    for r in recs:
        exp = r.get("experiment") or {}
        if exp.get("kind") == "tune" and (study is None or base_name(r) == study):
            out.append(r)
    return out


def base_name(rec: dict) -> str:
    """STUDY from the study name STUDY-FRAMEWORK."""
    return rec["experiment"]["id"].removesuffix(f"-{rec['framework']['name']}")


def _trial(rec: dict) -> dict:
    exp, metrics = rec["experiment"], rec["metrics"]
    return {"trial": exp["index"], "params": dict(exp["point"]), "state": exp["state"], "status": rec["status"],
            "best_test_accuracy": metrics.get("best_test_accuracy"), "epochs": metrics.get("epochs_completed"),
            "time_to_target_s": metrics.get("time_to_target_s"), "target_epoch": metrics.get("target_epoch"),
            "target_accuracy": rec["spec"].get("target_accuracy"), "wall_s": rec["timing"].get("wall_s")}


def _latest(group: list[dict]) -> dict:
    return max(group, key=lambda r: (r["experiment"]["index"] or 0, r["created_utc"]))


def rows(recs: list[dict], study: str | None = None, top: int = 5) -> list[dict]:
    """One row per study x framework: counts, wall times and the best `top` completed trials."""
    studies: dict[tuple, list[dict]] = defaultdict(list)
    for rec in trial_records(recs, study):
        studies[(base_name(rec), rec["experiment"]["id"], rec["framework"]["name"])].append(rec)
    table = []
    for (base, name, framework), group in studies.items():
        every = sorted((_trial(r) for r in group), key=lambda t: t["trial"] if t["trial"] is not None else -1)
        trials = [t for t in every if t["status"] != "interrupted"]  # those that count toward --trials
        counts = {s: sum(t["state"] == s for t in trials) for s in STATES}
        done = [t for t in trials if t["state"] == "complete" and t["best_test_accuracy"] is not None]
        best = sorted(done, key=lambda t: (-t["best_test_accuracy"], t["time_to_target_s"] is None,
                                           t["time_to_target_s"] or 0, t["wall_s"] or 0))[:top]
        table.append({"study": base, "name": name, "framework": framework,
                      # a trial cut short before its framework started (a lost record) knows no version: another's
                      "version": next((r["framework"]["version"] for r in group if r["framework"].get("version")), None),
                      # --trials of the latest command (a resumed study may have been asked for more)
                      "asked": _latest(group)["experiment"]["size"],
                      "trials": len(trials), **counts, "cut_short": len(every) - len(trials),
                      "wall_s": sum(t["wall_s"] or 0 for t in every),
                      "best": best, "_trials": trials})
    for base in {r["study"] for r in table}:
        mine = [r for r in table if r["study"] == base]
        common = min(r["trials"] for r in mine)
        for r in mine:  # the first `common` trials by number: the same number of trials for every framework
            r.update(common_trials=common, common_wall_s=sum(t["wall_s"] or 0 for t in r["_trials"][:common]))
    for r in table:
        del r["_trials"]
    return sorted(table, key=lambda r: (r["study"], r["framework"]))


def _value(value) -> str:
    return format(value, ".4g") if isinstance(value, float) else str(value)


def _ttt(t: dict) -> str:
    if t["target_accuracy"] is None:
        return "-"
    return time_to_target(t["time_to_target_s"], t["target_epoch"])


def _summary(r: dict) -> dict:
    top = r["best"][0] if r["best"] else None
    return {"framework": f"{r['framework']} {r['version'] or ''}".strip(), "study": r["name"],
            "trials": f"{r['trials']}/{r['asked']}" + (f" ({r['cut_short']} cut short)" if r["cut_short"] else ""),
            "complete": str(r["complete"]), "pruned": str(r["pruned"]),
            "failed": str(r["fail"]), "wall s (all)": num(r["wall_s"], ".1f"),
            f"wall s (first {r['common_trials']})": num(r["common_wall_s"], ".1f"),
            "best acc %": "-" if top is None else f"{100 * top['best_test_accuracy']:.2f}",
            "best trial": "-" if top is None else str(top["trial"])}


def _best(r: dict, names: list[str]) -> list[dict]:
    target = r["best"][0]["target_accuracy"] if r["best"] else None
    return [{"framework": r["framework"], "rank": str(i + 1), "trial": str(t["trial"]),
             **{n: _value(t["params"].get(n, "-")) for n in names},
             "best acc %": f"{100 * t['best_test_accuracy']:.2f}",
             ("s to target" if target is None else f"s to {100 * target:g}% (epoch)"): _ttt(t),
             "epochs": str(t["epochs"]), "wall s": num(t["wall_s"], ".1f")} for i, t in enumerate(r["best"])]


def render(table: list[dict], fmt: str = "markdown") -> str:
    """markdown (per study: the frameworks' summary, then their best trials), csv (the best trials, one
    per line, with their framework's counts) or json (the rows as they are)."""
    if fmt == "json":
        return json_text(table)
    names = list(dict.fromkeys(k for r in table for t in r["best"] for k in t["params"]))
    if fmt == "csv":
        head = ["study", "framework", "version", "asked", "trials", *STATES, "cut_short", "wall_s", "common_trials",
                "common_wall_s", "rank", "trial", *names, "best_test_accuracy", "time_to_target_s",
                "target_epoch", "epochs", "trial_wall_s"]
        lines = []
        for r in table:
            base = {k: r[k] for k in head if k in r}
            for i, t in enumerate(r["best"] or [None]):
                extra = {} if t is None else {"rank": i + 1, "trial": t["trial"], **t["params"],
                                              **{k: t[k] for k in ("best_test_accuracy", "time_to_target_s",
                                                                   "target_epoch", "epochs")},
                                              "trial_wall_s": t["wall_s"]}
                lines.append({k: v for k, v in {**base, **extra}.items() if k in head})
        return csv_text(lines, head)
    blocks = []
    for base in dict.fromkeys(r["study"] for r in table):
        mine = [r for r in table if r["study"] == base]
        best = [c for r in mine for c in _best(r, names)]
        blocks.append(f"### tuning study {markdown_cell(base)}\n\n" + markdown([_summary(r) for r in mine])
                      + (f"\n\nbest {max(len(r['best']) for r in mine)} completed trial(s) per framework:\n\n"
                         + markdown(best) if best else "\n\nno completed trial yet"))
    return "\n\n".join(blocks) if blocks else "(no tuning records)"
