"""Platform prices for the report's cost section: --price PLATFORM=USD_PER_HOUR and --prices FILE.

    python -m runner report results/ --price cuda=2.49 --price m1=0 --price colab=free
    python -m runner report results/ --prices prices.json     # {"cuda": 2.49, "colab": "free"}

A price is US dollars per hour of the machine, or "free" (a free tier: no dollars, limited hours).
Colab and Kaggle are free tiers unless a price is given for them (a paid Colab plan, say); any
other platform without a price gets no cost, never a guessed one. --price overrides the file.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from runner.errors import UserError

FREE = "free"
FREE_TIERS = {"colab": FREE, "kaggle": FREE}  # the notebooks' no-cost tiers


def parse_value(text, where: str):
    """A price: a non-negative finite number of USD/hour, or "free"."""
    if isinstance(text, str) and text.strip().casefold() == FREE:
        return FREE
    try:
        value = float(text)
    except (TypeError, ValueError):
        value = None
    if isinstance(text, bool) or value is None or not math.isfinite(value) or value < 0:
        raise UserError(f"{where}: price {text!r} is not a number of USD per hour >= 0 or 'free'")
    return value


def parse_flag(text: str) -> tuple[str, float | str]:
    """"cuda=2.49" -> ("cuda", 2.49)."""
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise UserError(f"--price {text!r}: expected PLATFORM=USD_PER_HOUR (or PLATFORM=free)")
    return name.strip(), parse_value(value.strip(), f"--price {text!r}")


def read_file(path) -> dict[str, float | str]:
    """A JSON object {platform: USD per hour or "free"}."""
    try:
        data = json.loads(Path(path).read_text())
    except OSError as e:
        raise UserError(f"--prices {path}: cannot read it ({e.strerror})") from None
    except ValueError as e:
        raise UserError(f"--prices {path}: not JSON ({e})") from None
    if not isinstance(data, dict):
        raise UserError(f"--prices {path}: expected a JSON object {{\"PLATFORM\": USD_PER_HOUR, ...}}")
    return {str(k): parse_value(v, f"--prices {path}: {k}") for k, v in data.items()}


def resolve(flags: list[str] | None = None, path=None) -> dict[str, float | str]:
    """The free tiers, then the file, then the flags (later wins)."""
    prices = dict(FREE_TIERS)
    if path is not None:
        prices |= read_file(path)
    prices |= dict(parse_flag(f) for f in flags or [])
    return prices
