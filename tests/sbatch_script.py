"""Reading an sbatch script the two ways it is read for real, for the sbatch tests: its #SBATCH lines as
sbatch's own tokenizer reads them, and its commands by running it with bash under fake programs that only
record their arguments (nothing else executes)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

C_SPACE = " \t\n\v\f\r"  # C's isspace() in the C locale


def _words(text: str) -> list[str]:
    """One #SBATCH line's words (after the magic word), as Slurm's src/sbatch/opt.c _get_argument reads
    them: whitespace splits, '...' or "..." group, a backslash escapes the next character (inside quotes
    too), an unquoted # ends the line. ValueError where sbatch would stop with a fatal error."""
    words, i = [], 0
    while True:
        while i < len(text) and text[i] in C_SPACE:
            i += 1
        if i < len(text) and text[i] == ":":
            raise ValueError(f"sbatch: Unexpected `:` in {text!r}")
        if i == len(text):
            return words
        word, quote, escape = [], None, False
        while i < len(text) and (quote or text[i] not in C_SPACE):
            c = text[i]
            if escape:
                escape = False
            elif c == "\\":
                escape, i = True, i + 1
                continue
            elif quote:
                if c == quote:
                    quote, i = None, i + 1
                    continue
            elif c in "\"'":
                quote, i = c, i + 1
                continue
            elif c == "#":
                i = len(text)
                break
            word.append(c)
            i += 1
        if quote:
            raise ValueError(f"sbatch: Unmatched `{quote}` in {text!r}")
        if word:
            words.append("".join(word))


def sbatch_options(script: str) -> list[str]:
    """The options sbatch takes from the script (src/sbatch/opt.c _opt_batch_script): every #SBATCH line up
    to the first command; ValueError for a line it would read as a heterogeneous-job separator."""
    options = []
    for line in script.split("\n"):  # sbatch's _next_line splits at \n only
        if line.startswith("#SBATCH"):
            if re.search("hetjob|packjob", line, re.IGNORECASE):
                raise ValueError(f"sbatch: a hetjob separator: {line!r}")
            options += _words(line[len("#SBATCH"):])
        elif line.lstrip(C_SPACE)[:1] in ("#", ""):
            continue  # a comment or a blank line
        else:
            break  # the first command: sbatch reads no #SBATCH line after it
    return options


def commands(script: str) -> list[str]:
    """The lines bash runs: neither blank nor a comment."""
    return [line for line in script.split("\n") if line.strip() and not line.lstrip().startswith("#")]


FAKE = "#!/bin/bash\nprintf '%s\\0' {tag} \"$@\" > \"$DLBENCH_TEST_RECORD\"\n"


def fake(path: Path, tag: str) -> Path:
    """A program at `path` that writes its tag and arguments (NUL-separated) to $DLBENCH_TEST_RECORD."""
    path.write_text(FAKE.format(tag=tag))
    path.chmod(0o755)
    return path


def fake_bin(folder: Path) -> Path:
    """A PATH folder where sbatch, srun, apptainer and python only record their arguments."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("sbatch", "srun", "apptainer", "python", "python3"):
        fake(folder / name, name)
    return folder


def files(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in Path(folder).rglob("*")}


def run(script: str, work: Path, bin_dir: Path, task_id: int = 7) -> tuple[list[str] | None, int]:
    """Run `script` with bash in `work` (PATH: only `bin_dir`), as array task `task_id`; the recorded
    arguments of the fake that ran (None if none ran) and bash's exit status."""
    record = work / "record"
    path = work / "dlbench.sbatch"
    path.write_bytes(script.encode())
    env = {"PATH": str(bin_dir), "SLURM_ARRAY_TASK_ID": str(task_id), "DLBENCH_TEST_RECORD": str(record),
           "HOME": str(work), "LANG": "C.UTF-8"}
    out = subprocess.run(["/bin/bash", str(path)], cwd=work, env=env, capture_output=True, timeout=60)
    path.unlink()
    if not record.exists():
        return None, out.returncode
    args = os.fsdecode(record.read_bytes()).split("\0")[:-1]
    record.unlink()
    return args, out.returncode
