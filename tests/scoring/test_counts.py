"""The count-aware methods against R `surveillance` (tests/scoring/oracle/count_methods.R) and
the properties a coordinator relies on: exact bounds, no alarm without a rise, reset after alarm."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest

from services.scoring.counts import glr, glrpois, glrpois_statistics, nb_quantile, negbin_bound, poisson_bound
from services.scoring.methods import METHODS, score_series, upper_bound

ORACLE = Path(__file__).parent / "oracle"
SERIES = sorted(ORACLE.glob("*.csv"))


def _rows(path: Path) -> tuple[list[float], list[dict[str, str]]]:
    rows = list(csv.DictReader(path.open()))
    return [float(r["count"]) for r in rows], rows


def test_the_oracle_has_every_series() -> None:
    assert len(SERIES) == 6


@pytest.mark.parametrize("path", SERIES, ids=lambda p: p.stem)
def test_poisson_bound_is_algo_bayes_every_period(path: Path) -> None:
    counts, rows = _rows(path)
    bounds = poisson_bound(counts, baseline=28, guard=2, alpha=0.001)
    checked = 0
    for row, bound in zip(rows, bounds, strict=True):
        if row["poisson_upper"] == "":
            assert bound.upper is None
            continue
        assert bound.upper == pytest.approx(float(row["poisson_upper"]), abs=1e-4)
        assert bound.alarm == (row["poisson_alarm"] in ("1", "TRUE"))
        checked += 1
    assert checked == len(rows) - 30


@pytest.mark.parametrize("path", SERIES, ids=lambda p: p.stem)
def test_negbin_bound_is_qnbinom_of_the_predictive_every_period(path: Path) -> None:
    counts, rows = _rows(path)
    for row, bound in zip(rows, negbin_bound(counts), strict=True):
        if row["negbin_upper"] != "":
            assert bound.upper == pytest.approx(float(row["negbin_upper"]), abs=1e-4)


@pytest.mark.parametrize("path", SERIES, ids=lambda p: p.stem)
def test_glrpois_is_algo_glrpois_every_period(path: Path) -> None:
    counts, rows = _rows(path)
    bounds, stats = glrpois(counts), glrpois_statistics(counts)
    alarms = 0
    for row, bound, stat in zip(rows, bounds, stats, strict=True):
        if row["glrpois_upper"] == "":
            assert bound.upper is None
            continue
        assert stat == pytest.approx(float(row["glrpois_value"]), abs=1e-4)
        assert bound.alarm == (row["glrpois_alarm"] == "TRUE")
        # R returns the smallest whole count that alarms; ours is the exact count.
        assert math.ceil(bound.upper - 1e-9) == int(float(row["glrpois_upper"]))
        alarms += bound.alarm
    if path.stem in ("pois_1", "nb2_3", "sparse_0.05", "zeros"):
        assert alarms >= 1  # the injected surge is seen, so the reset path is exercised


def test_every_count_method_is_registered() -> None:
    for name in ("poisson", "negbin", "glrpois", "glr"):
        assert name in METHODS


@pytest.mark.parametrize("method", ["poisson", "negbin", "glrpois", "glr"])
def test_live_bound_equals_the_series_bound(method: str) -> None:
    counts, _ = _rows(ORACLE / "nb2_3.csv")
    series = score_series(method, counts)
    for t in range(30, len(counts)):
        live = upper_bound(method, counts[:t], current=counts[t])
        assert live == series[t]


def test_upper_bound_without_current_keeps_the_replayed_reset() -> None:
    counts, _ = _rows(ORACLE / "zeros.csv")
    history = counts[:46]  # an alarm on the surge just before
    first = upper_bound("glr", history)
    upper_bound("glr", history, current=50)
    assert upper_bound("glr", history) == first


def test_quasi_poisson_needs_more_on_clustered_history() -> None:
    calm = [1.0] * 30
    clustered = [0, 0, 0, 7, 0, 0, 0, 0, 3, 0] * 3
    assert sum(calm) == sum(clustered)
    assert upper_bound("glr", clustered).upper > upper_bound("glr", calm).upper
    assert upper_bound("glr", calm).upper == pytest.approx(upper_bound("glrpois", calm).upper)


def test_one_report_on_a_silent_cell_is_not_an_alarm_but_three_are() -> None:
    silent = [0.0] * 30
    assert not upper_bound("glr", silent, current=1).alarm
    assert upper_bound("glr", silent, current=3).alarm
    assert not upper_bound("negbin", silent, current=1).alarm


def test_p_value_says_how_rare_the_count_is() -> None:
    history = [1.0, 0.0] * 15
    bound = upper_bound("glr", history, current=6)
    # The reference is history[:28], fourteen 1s: Poisson with mean 14.5/28 per day, and the
    # best window is the day alone. P(X >= 6) is about 1.7e-5.
    assert bound.p_value == pytest.approx(1 - sum(math.exp(-14.5 / 28) * (14.5 / 28) ** k / math.factorial(k)
                                                  for k in range(6)), rel=1e-9)


def test_nb_quantile_is_poisson_at_infinite_size() -> None:
    # qpois(0.999, 3) = 10 and qnbinom(0.999, size=2, mu=3) = 17 (R).
    assert nb_quantile(0.999, math.inf, 3.0) == 10
    assert nb_quantile(0.999, 2.0, 3.0) == 17


@pytest.mark.parametrize("bad", [dict(baseline=2), dict(guard=-1), dict(window=0), dict(threshold=0)])
def test_bad_glr_parameters_are_named(bad: dict) -> None:
    with pytest.raises(ValueError, match=next(iter(bad))):
        glr([1.0] * 40, **bad)
