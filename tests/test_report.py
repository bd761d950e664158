"""`runner report`: the page's content from fixture and committed records, escaping, prices, the CLI."""

from __future__ import annotations

import base64
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("matplotlib", reason="the report extra is not installed: pip install 'dlbench[report]'")
pytest.importorskip("jinja2", reason="the report extra is not installed: pip install 'dlbench[report]'")

from markupsafe import escape  # noqa: E402 (Jinja2's own escaping)

from conftest import ROOT, run_cli  # noqa: E402
from report_records import EVIL, H100, fleet, gpu_run, run  # noqa: E402
from runner import records as recordlib  # noqa: E402
from runner.cli import main  # noqa: E402
from runner.errors import UserError  # noqa: E402
from runner.records import collection  # noqa: E402
from runner.report import compare, page, prices, sections  # noqa: E402


def make_page(recs, flags=("cuda=2.5",), **kw) -> str:
    return page.html(recs, compare.rows(recs), prices.resolve(list(flags)), command="python -m runner report x", **kw)


def svgs(text: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/svg\+xml;base64,([A-Za-z0-9+/=]+)"', text)]


def test_page_has_every_section_with_the_records_numbers():
    recs = fleet()
    text = make_page(recs)
    for heading in ("Comparison table", "Resources and energy", "Cost", "Machines", "Records"):
        assert f"<h3>{heading}</h3>" in text or f"<h2>{heading}</h2>" in text
    rows = compare.rows(recs)
    for line in page._table(rows, rows):  # every cell of compare's table, escaped once
        for value in line["cells"].values():
            assert f">{escape(value)}<" in text
    assert "2.20 [2.00-2.40]" in text  # the CPU row's steady s/epoch and CI
    assert "FAIL: not comparable" in text and 'class="parity-fail"' in text
    # three figures, each a non-trivial SVG
    figs = svgs(text)
    assert len(figs) == 3 and all(f.lstrip().startswith(b"<?xml") and len(f) > 5000 for f in figs)
    # resources and energy of the GPU row: 1234.5 J, 3 epochs x 2048 images / J, util, power, memory
    assert "1,234" in text and f"{3 * 2048 / 1234.5:,.1f}" in text
    assert ">87<" in text and ">312<" in text and "3.00 GiB" in text and "1.00 GiB" in text
    assert "nvml-energy-counter: GPU 0 board" in text
    # cost: cuda at 2.5 USD/h over 11.1 s of training; colab a free tier; cpu unpriced
    assert f"{2.5 * 11.1 / 3600:.4f}" in text and "free tier" in text and "no price given" in text
    # machines and reproduction
    assert H100["name"] in text and "driver 550.54.15" in text and "CUDA 12.4" in text
    assert "python -m runner run --framework torch --platform cpu" in text and "0123abctor" in text


def test_everything_from_a_record_is_escaped():
    text = make_page(fleet())
    assert "<script" not in text.lower() and "<img src=x" not in text  # no markup from any record
    assert escape(EVIL) in text and "1&lt;b&gt;" in text
    assert escape("</code><script>alert(1)</script>") in text
    for svg in svgs(text):  # figure text is drawn as paths; matplotlib escapes it in its comments
        assert b"<script" not in svg and b"&lt;script&gt;window.__xss" in svg


def test_the_page_fetches_nothing():
    text = make_page(fleet())
    assert "default-src 'none'" in text
    assert not re.search(r'(src|href)="(?!data:|#)', text)  # only data: images and in-page links
    assert "http://" not in text and "https://" not in text


def test_curve_is_the_median_over_runs_of_cumulative_training_time():
    recs = [run(epochs=(3.0, 2.0), accs=(0.9, 0.99)), run(epochs=(5.0, 2.0), accs=(0.92, 0.995)),
            run(epochs=(4.0, 3.0), accs=(0.91, 0.97))]
    assert sections.curve(recs) == ([4.0, 7.0], [0.91, 0.99])
    assert sections.curve([run(status="failed")]) == ([], [])


def test_cost_uses_the_platforms_price_and_free_tiers():
    (row,) = compare.rows([gpu_run()])
    c = sections.cost(row, [gpu_run()], {"cuda": 3.6})
    assert c["train_usd"] == pytest.approx(3.6 * 11.1 / 3600) and c["target_usd"] == pytest.approx(3.6 * 11.1 / 3600)
    assert c["wall_usd"] == pytest.approx(3.6 * 21.1 / 3600)
    assert sections.cost(row, [], {})["train_usd"] is None
    assert prices.resolve([])["colab"] == prices.FREE and prices.resolve(["colab=9.99"])["colab"] == 9.99


@pytest.mark.parametrize("flag", ["cuda", "=2", "cuda=-1", "cuda=abc", "cuda=nan"])
def test_bad_prices_are_one_clear_error(flag):
    with pytest.raises(UserError, match="--price"):
        prices.resolve([flag])


def test_prices_file(tmp_path):
    f = tmp_path / "p.json"
    f.write_text('{"cuda": 2.49, "colab": "free", "m1": 0}')
    assert prices.resolve(["cuda=3"], f) == {"cuda": 3.0, "colab": "free", "kaggle": "free", "m1": 0.0}
    f.write_text('["cuda"]')
    with pytest.raises(UserError, match="JSON object"):
        prices.resolve([], f)


def test_report_from_the_committed_results():
    recs, skipped = collection.load([ROOT / "results"])
    assert recs and [path for path, _ in skipped] == [str(ROOT / "results" / "archive")]  # superseded runs: out
    text = make_page(recs)
    for r in recs:  # every record's command and commit, so a reader can reproduce it
        assert escape(r["command"]) in text and r["software"]["runner_git_sha"] in text
    rows = compare.rows(recs)
    for line in page._table(rows, rows):  # compare's numbers (s/epoch with CI, time to 99 %, ...)
        assert all(f">{escape(v)}<" in text for v in line["cells"].values())
    specs = {r["spec_hash"] for r in compare.training(recs)}  # three figures per training spec; studies draw none
    assert len(svgs(text)) == 3 * len(specs)
    for row in rows:  # the runs that recorded their peak RSS show it
        assert row["peak_rss_bytes"] is None or page._size(row["peak_rss_bytes"]) in text


def write_records(folder: Path, recs) -> Path:
    folder.mkdir()
    for r in recs:
        recordlib.write(r, folder)
    return folder


def test_cli_writes_the_page_and_the_figures(tmp_path, capsys, monkeypatch):
    folder = write_records(tmp_path / "recs", fleet())
    out = tmp_path / "r.html"
    monkeypatch.setattr(sys, "argv", ["pytest", "--not-this"])  # the page names main's argv, not the process's
    assert main(["report", str(folder), "-o", str(out), "--price", "cuda=2.5"]) == 0
    assert "5 record(s)" in capsys.readouterr().out and "Resources and energy" in out.read_text()
    assert f"python -m runner report {folder} -o {out} --price cuda=2.5" in out.read_text()
    assert "--not-this" not in out.read_text()
    mask = os.umask(0)
    os.umask(mask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask  # not mkstemp's 0600: a web server may serve it
    assert main(["report", str(folder), "--plots", str(tmp_path / "figs"), "--format", "png"]) == 0
    figs = sorted(p.name.split("-", 1)[1] for p in (tmp_path / "figs").iterdir())
    assert figs == ["epoch-times.png", "platforms.png", "time-to-accuracy.png"]
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in (tmp_path / "figs").iterdir())
    assert not (tmp_path / "report.html").exists()


@pytest.mark.parametrize("args, message", [
    (["-o", "x.json"], "must end in .html"),
    (["--price", "cuda"], "PLATFORM=USD_PER_HOUR"),
    (["--track", "neptune"], "mlflow[:TRACKING_URI] or wandb[:PROJECT]"),
    (["--noisy-cv", "-1"], "--noisy-cv"),
])
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    folder = write_records(tmp_path / "recs", [run()])
    assert main(["report", str(folder), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_cli_missing_path(tmp_path, capsys):
    assert main(["report", str(tmp_path / "nope"), "-o", str(tmp_path / "r.html")]) == 2
    assert "no such file or folder" in capsys.readouterr().err


def test_help_imports_no_plotting_or_template_library():
    code = ("import sys, contextlib, io; from runner import cli\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try: cli.main(['report', '--help'])\n"
            "    except SystemExit: pass\n"
            "bad = [m for m in ('matplotlib', 'jinja2', 'mlflow', 'wandb') if m in sys.modules]\n"
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=60)


def test_a_data_parallel_row_and_its_one_device_row_each_get_their_own_runs():
    """Issue 28, 5: the report matched runs to rows by a stale copy of the row key that left out the
    device count, so a 2-device row (3 runs) and its 1-device row (2 runs) each showed all 5."""
    def parallel(rec, world):
        rec["parallel"] = {"world_size": world, "devices": world}
        return rec
    recs = [parallel(run(), 2) for _ in range(3)] + [parallel(run(), 1) for _ in range(2)]
    rows = compare.rows(recs)
    assert sorted((r["devices"], r["runs"]) for r in rows) == [(1, 2), (2, 3)]
    runs = sections.runs_by_row(recs, rows)
    assert [len(r) for r in runs] == [row["runs"] for row in rows]
    for row, group in zip(rows, runs):
        assert {g["parallel"]["devices"] for g in group} == {row["devices"]}

def _cli_error(proc, path) -> str:
    """The one line a refused `report` prints; it names `path`."""
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("dlbench: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert "Traceback" not in proc.stderr and str(path) in proc.stderr
    return proc.stderr


@pytest.mark.parametrize("flags", [["-o", "{FILE}/x.html"], ["--plots", "{FILE}"], ["--plots", "{FILE}/figs"]])
def test_cli_a_target_below_a_file_is_one_line_and_exit_2(tmp_path, flags):
    """It was a FileExistsError traceback from mkdir, after the records were read and drawn."""
    folder = write_records(tmp_path / "recs", [run()])
    (tmp_path / "FILE").write_text("mine")
    proc = run_cli("report", folder, *(f.format(FILE=tmp_path / "FILE") for f in flags))
    assert f"{tmp_path / 'FILE'} is a file, not a folder" in _cli_error(proc, tmp_path / "FILE")
    assert (tmp_path / "FILE").read_text() == "mine" and not (tmp_path / "report.html").exists()


def test_cli_a_page_named_as_a_folder_is_one_line_and_exit_2(tmp_path):
    folder = write_records(tmp_path / "recs", [run()])
    (tmp_path / "page.html").mkdir()
    proc = run_cli("report", folder, "-o", tmp_path / "page.html")
    assert "that is a folder" in _cli_error(proc, tmp_path / "page.html")


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes in a read-only folder")
@pytest.mark.parametrize("flag, target", [("-o", "ro/x.html"), ("--plots", "ro/figs"), ("--plots", "ro")])
def test_cli_a_read_only_folder_is_one_line_and_exit_2(tmp_path, flag, target):
    folder = write_records(tmp_path / "recs", [run()])
    (tmp_path / "ro").mkdir(mode=0o555)
    proc = run_cli("report", folder, flag, tmp_path / target)
    assert f"cannot write in {tmp_path / 'ro'}" in _cli_error(proc, tmp_path / "ro")
    assert list((tmp_path / "ro").iterdir()) == []


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="no /proc file system")
@pytest.mark.parametrize("flag, target", [("-o", "/proc/dlbench-x.html"), ("--plots", "/proc/dlbench-figs")])
def test_cli_a_file_system_that_refuses_is_one_line_and_exit_2(tmp_path, flag, target):
    """/proc refuses new files to root too (as root, os.access cannot tell: the write's error is the line)."""
    folder = write_records(tmp_path / "recs", [run()])
    _cli_error(run_cli("report", folder, flag, target), "/proc")


def test_page_and_figures_show_no_control_or_bidi_characters_from_records(tmp_path):
    """compare's table turned them into spaces; the page kept a NUL, an ESC and a U+202E (which shows
    the rest of a line reversed) from a record's strings, and the SVGs with a NUL were invalid XML."""
    import xml.dom.minidom

    bad = run(framework="tor\u202ech\x00x\x1b[31m", platform="cp\u2066u", created="2026-11-23T18:00:00Z")
    bad["command"] = "python -m runner \u202erun\x00 --x"
    recs = fleet() + [bad]
    text = make_page(recs)
    for c in ("\u202e", "\u2066", "\x00", "\x1b", "\x07"):
        assert c not in text
    assert "tor ch x [31m" in text and "python -m runner  run  --x" in text  # neutralised, not dropped
    for svg in svgs(text):
        xml.dom.minidom.parseString(svg)  # well-formed: a browser draws it
        assert b"\x00" not in svg and b"\x1b" not in svg and "\u202e".encode() not in svg


def test_a_row_timed_from_noisy_runs_only_is_marked_in_the_table_the_figure_and_the_resources():
    loud = [run(framework="jax", version="0.10.2", epochs=(3.0, s, s), created=f"2026-11-23T18:0{i}:00Z")
            for i, s in enumerate((1.0, 1.2))]
    for r in loud:
        r["resources"]["host"]["other_cpu_percent_mean"] = 61.4
        r["host_noise"] = {**r["host_noise"], "verdict": "noisy", "other_cpu_percent_mean": 61.4,
                           "reasons": ["other processes used 61 % of the CPU (limit 10 %)"]}
    recs = fleet() + loud
    rows = compare.rows(recs)
    text = make_page(recs)
    note = "noisy host: other processes used 61 % of the CPU (limit 10 %); only noisy runs, ranked after quiet rows"
    assert str(escape(note)) + "<" in text
    # the table ranks it after the quiet CPU row though it is faster
    cpu_rows = [r["framework"] for r in rows if r["platform"] == "cpu"]
    assert cpu_rows == ["torch", "jax"]
    assert ">61 <span class=\"muted\">(2 noisy runs)</span>" in text
    from runner.report import plots

    (jax_cpu,) = [r for r in rows if r["platform"] == "cpu" and r["framework"] == "jax"]
    assert "noisy host" in plots._flag(jax_cpu)  # the figures' labels (their text is drawn as paths)


def test_the_standard_workload_opens_the_page_then_plain_runs_then_sweeps():
    """Issue 29, 5: the first table and plots a reader sees are the standard workload's."""
    from runner.workload.spec import Spec, hash_of

    def respec(r, experiment=None, **spec):
        r["spec"] = {**r["spec"], **spec}
        r["spec_hash"] = hash_of(r["spec"])
        r["experiment"] = experiment
        return r

    standard = Spec().to_dict()
    sweep = respec(run(), {"name": "batch-size", "kind": "sweep", "point": {"batch_size": 128}, "state": "complete"},
                   **{**standard, "batch_size": 128})
    small = respec(run(), **{**standard, "epochs": 3})
    main_run = respec(run(), **standard)
    recs = [sweep, small, main_run]
    view = sections.build(recs, compare.rows(recs), {})
    order = [b["spec_hash"] for b in view["specs"]]
    assert order == [Spec().hash, small["spec_hash"], sweep["spec_hash"]]
    text = make_page(recs)
    assert text.index(f'id="spec-{Spec().hash[:12]}"') < text.index(f'id="spec-{small["spec_hash"][:12]}"')


def test_every_row_shows_its_distance_to_the_peak_and_energy_per_image():
    from runner.records import efficiency

    recs = fleet()
    for r in recs:  # the fixtures change device and energy after the block was made: make it again
        r["efficiency"] = efficiency.block(r)
    text = make_page(recs)
    for header in ("GFLOP/s", "% of peak FP32", "J/image"):
        assert f"<th>{header}</th>" in text
    gpu = next(r for r in compare.rows(recs) if r["device"] == "cuda")
    assert gpu["peak_source"].startswith("67 TFLOP/s FP32") and f"{gpu['percent_of_peak']:.2f}" in text
    assert f"{gpu['joules_per_image']:.4g}" in text and "H100 SXM5" in text
