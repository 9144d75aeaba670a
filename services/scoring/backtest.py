"""Replay a bucketed count series through one scoring method: the engine of `pantau backtest`.

Reads CSV `period,count` (one row per bucket, oldest first) and writes CSV
`period,count,expected,upper,alarm`, with `expected`/`upper` empty where the method has too
little history. No CLI library here: the `pantau backtest` command only opens the file and
passes the options through.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from typing import TYPE_CHECKING, TextIO

from services.scoring.methods import METHODS, Bound, score_series

if TYPE_CHECKING:
    from shared.scoring_config import ScoringSettings

INPUT_HEADER = ("period", "count")
OUTPUT_HEADER = ("period", "count", "expected", "upper", "alarm")

# EWMA needs at least this many baseline buckets unless the baseline itself is shorter.
_EWMA_MIN_BASELINE = 11


def read_series(in_stream: Iterable[str]) -> tuple[list[str], list[float]]:
    """Periods and counts from CSV `period,count`; ValueError names the line and problem."""
    reader = csv.reader(in_stream)
    periods: list[str] = []
    counts: list[float] = []
    header_seen = False
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if not header_seen:
            _check_header(row, line)
            header_seen = True
            continue
        period, count = _parse_row(row, line)
        periods.append(period)
        counts.append(count)
    if not header_seen:
        raise ValueError("line 1: missing header 'period,count' (the input is empty)")
    return periods, counts


def _check_header(row: list[str], line: int) -> None:
    cells = [cell.strip().lstrip("\ufeff").lower() for cell in row]
    if tuple(cells) != INPUT_HEADER:
        raise ValueError(f"line {line}: expected header 'period,count', got {','.join(row)!r}")


def _parse_row(row: list[str], line: int) -> tuple[str, float]:
    if len(row) != 2:
        raise ValueError(f"line {line}: expected 2 fields (period,count), got {len(row)}")
    period, raw = row[0].strip(), row[1].strip()
    if not period:
        raise ValueError(f"line {line}: period is empty")
    try:
        count = float(raw)
    except ValueError:
        raise ValueError(f"line {line}: count {raw!r} is not a number") from None
    if not math.isfinite(count):
        raise ValueError(f"line {line}: count {raw!r} is not a finite number")
    if count < 0:
        raise ValueError(f"line {line}: count {raw!r} is negative")
    return period, count


def method_params(
    method: str, baseline: int | None, alpha: float | None, min_sigma: float | None
) -> dict[str, float]:
    """Map the command-line options onto the method's own parameter names.

    EARS: baseline, alpha, min_sigma as they are. CUSUM: baseline is the number of training
    buckets whose mean is m (`start`). Count methods: baseline and (bounds only) alpha. EWMA: baseline is the maximum baseline and alpha the
    red p-value level. An option that has no meaning for the method is an error, not ignored.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {', '.join(METHODS)}")
    params: dict[str, float] = {}
    if method.startswith("ears-"):
        for name, value in (("baseline", baseline), ("alpha", alpha), ("min_sigma", min_sigma)):
            if value is not None:
                params[name] = value
        return params
    _reject(method, "min_sigma", min_sigma)
    if method in ("poisson", "negbin", "glrpois", "glr"):
        if method.startswith("glr"):
            _reject(method, "alpha", alpha)
        for name, value in (("baseline", baseline), ("alpha", alpha)):
            if value is not None:
                params[name] = value
        return params
    if method == "cusum":
        _reject(method, "alpha", alpha)
        if baseline is not None:
            params["start"] = baseline
        return params
    if baseline is not None:
        params["baseline"] = baseline
        params["min_baseline"] = min(_EWMA_MIN_BASELINE, baseline)
    if alpha is not None:
        params["red_p"] = alpha
        # Keep the yellow level at or above red so a loose alpha stays valid.
        params["yellow_p"] = max(0.05, alpha)
    return params


def _reject(method: str, name: str, value: float | None) -> None:
    if value is not None:
        raise ValueError(f"{name.replace('_', '-')} does not apply to method {method}")


def format_number(value: float) -> str:
    """Up to 6 decimals without trailing zeros: 3.0 -> '3', 3.2788535 -> '3.278854'."""
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    text = f"{value:.6f}".rstrip("0").rstrip(".")
    return "0" if text == "-0" else text


def _row(period: str, count: float, bound: Bound) -> list[str]:
    def optional(value: float | None) -> str:
        return "" if value is None else format_number(value)

    return [
        period,
        format_number(count),
        optional(bound.expected),
        optional(bound.upper),
        "true" if bound.alarm else "false",
    ]


def run_backtest(
    method: str,
    in_stream: Iterable[str],
    out_stream: TextIO,
    baseline: int | None = None,
    alpha: float | None = None,
    min_sigma: float | None = None,
) -> None:
    """Score every bucket of the CSV on in_stream and write the result CSV to out_stream.

    Options left as None take the method's defaults. Everything is validated before the
    first byte is written, so a bad file or option leaves out_stream untouched.
    """
    params = method_params(method, baseline, alpha, min_sigma)
    periods, counts = read_series(in_stream)
    bounds = score_series(method, counts, **params)
    writer = csv.writer(out_stream, lineterminator="\n")
    writer.writerow(OUTPUT_HEADER)
    writer.writerows(_row(p, c, b) for p, c, b in zip(periods, counts, bounds, strict=True))


def run_live_backtest(settings: "ScoringSettings", in_stream: Iterable[str], out_stream: TextIO) -> None:
    """As run_backtest, with the method and parameters the live scorer uses (`settings`)."""
    periods, counts = read_series(in_stream)
    bounds = score_series(settings.method, counts, **settings.method_params())
    writer = csv.writer(out_stream, lineterminator="\n")
    writer.writerow(OUTPUT_HEADER)
    writer.writerows(_row(p, c, b) for p, c, b in zip(periods, counts, bounds, strict=True))
