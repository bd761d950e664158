"""How long does `runner report` take over 1,000 records? Goal (issue 17): a few seconds.

    python benchmarks/report_1000.py                  # 1,000 records: 21 rows x ~48 runs, 50 epochs each
    python benchmarks/report_1000.py --records 5000 --versions 20

The records are the committed results/ records (real 50-epoch runs), copied with new run ids,
framework versions (rows = 3 frameworks x --versions) and jittered epoch times, written to a temp folder as files, then
read back the way the CLI does. Prints each stage's seconds (load = read + upgrade + schema-validate
every file; rows = compare's aggregation with its bootstrap CIs; page = sections, figures, HTML) and
the page's size. Imports (matplotlib, Jinja2) are timed apart: they are paid once per process.
"""

from __future__ import annotations

import argparse
import copy
import random
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def make(n: int, versions: int, folder: Path) -> None:
    from runner import records
    from runner.records import collection

    base, _ = collection.load([ROOT / "results"])
    rng = random.Random(0)
    for i in range(n):
        r = copy.deepcopy(base[i % len(base)])
        r["run_id"] = uuid.UUID(int=rng.getrandbits(128)).hex
        r["created_utc"] = f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:{i % 60:02d}:{(i // 60) % 60:02d}Z"
        r["framework"]["version"] = f"{r['framework']['version']}-v{i % versions}"
        scale = rng.uniform(0.95, 1.05)
        r["timing"]["epoch_train_s"] = [t * scale for t in r["timing"]["epoch_train_s"]]
        r["timing"]["steady_epoch_s"] *= scale
        records.write(r, folder)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=1000)
    ap.add_argument("--versions", type=int, default=7, help="versions per framework (each a row of its own)")
    args = ap.parse_args()

    t = time.perf_counter()
    import jinja2  # noqa: F401
    import matplotlib.figure  # noqa: F401
    imports = time.perf_counter() - t

    from runner.records import collection
    from runner.report import compare, page, prices

    with tempfile.TemporaryDirectory() as tmp:
        make(args.records, args.versions, Path(tmp))
        wall, cpu = [time.perf_counter()], [time.process_time()]
        recs, skipped = collection.load([tmp])
        wall.append(time.perf_counter()), cpu.append(time.process_time())
        rows = compare.rows(recs)
        wall.append(time.perf_counter()), cpu.append(time.process_time())
        text = page.html(recs, rows, prices.resolve(["cpu=0.10"]))
        wall.append(time.perf_counter()), cpu.append(time.process_time())
    print(f"{len(recs)} records ({len(skipped)} skipped), {len(rows)} rows, page {len(text.encode()) / 2**20:.2f} MiB")
    # CPU seconds too: on a shared machine the wall clock also counts the other tenants
    print(f"imports {imports:.2f} s wall | " + " | ".join(
        f"{name} {wall[i + 1] - wall[i]:.2f} s wall, {cpu[i + 1] - cpu[i]:.2f} s CPU"
        for i, name in enumerate(("load", "rows", "page"))) + f" | total {wall[-1] - wall[0]:.2f} s wall")


if __name__ == "__main__":
    main()
