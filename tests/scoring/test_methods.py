"""Tests for the scoring methods: known answers, hand-derived cases and edge behaviour."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.scoring.methods import (
    METHODS,
    NO_BOUND,
    Bound,
    cusum,
    ears_c1,
    ears_c2,
    ears_c3,
    ewma,
    score_series,
    t_cdf,
    t_isf,
    t_sf,
    upper_bound,
)

Z95 = 1.6448536269514722  # qnorm(0.95)


def approx(value: float) -> object:
    return pytest.approx(value, abs=5e-7)


# --------------------------------------------------------------------------- EARS C1


def test_c1_known_answer_from_surveillance_tests() -> None:
    # Last 7 weekly values 1,1,1,3,3,1,2; mean 12/7 = 1.714286, sum of squared
    # deviations 38/7, var 38/42, sd 0.951190; U = 1.714286 + 1.644854*0.951190.
    bounds = ears_c1([5, 9, 1, 1, 1, 3, 3, 1, 2, 0], baseline=7, alpha=0.05)
    assert bounds[9].upper == approx(3.278854)
    assert bounds[9].expected == approx(1.714286)
    assert bounds[9].alarm is False


def test_c1_known_answer_through_upper_bound() -> None:
    bound = upper_bound("ears-c1", [1, 1, 1, 3, 3, 1, 2], baseline=7, alpha=0.05)
    assert bound.upper == approx(3.278854)
    assert bound.alarm is False
    assert upper_bound("ears-c1", [1, 1, 1, 3, 3, 1, 2], current=4, baseline=7, alpha=0.05).alarm


def test_c1_first_scorable_bucket_is_baseline_plus_one() -> None:
    bounds = ears_c1([1, 2, 3, 4], baseline=3, alpha=0.05)
    assert bounds[:3] == [NO_BOUND] * 3
    # ref 1,2,3: mean 2, sd 1 -> U = 2 + 1.644854 = 3.644854; 4 > U.
    assert bounds[3] == Bound(expected=2.0, upper=pytest.approx(2 + Z95), alarm=True)


def test_c1_too_short_history_has_no_bound() -> None:
    assert ears_c1([4, 4, 4, 4, 4, 4, 4]) == [NO_BOUND] * 7
    assert upper_bound("ears-c1", [4, 4, 4, 4, 4, 4]) == NO_BOUND
    assert ears_c1([]) == []


def test_c1_flat_history_alarms_on_any_rise() -> None:
    # sd = 0 and min_sigma = 0: U = mean = 2.
    bounds = ears_c1([2] * 7 + [3, 2], baseline=7)
    assert bounds[7] == Bound(expected=2.0, upper=2.0, alarm=True)
    # Reference now 2,2,2,2,2,2,3: mean 15/7, not flat, 2 is below it.
    assert bounds[8].alarm is False
    assert ears_c1([2] * 8, baseline=7)[7] == Bound(2.0, 2.0, False)


def test_c1_flat_history_with_min_sigma() -> None:
    # U = 2 + qnorm(0.999)*0.5 = 2 + 3.090232*0.5 = 3.545116.
    bound = ears_c1([2] * 7 + [3], baseline=7, min_sigma=0.5)[7]
    assert bound.upper == approx(3.545116)
    assert bound.alarm is False


# --------------------------------------------------------------------------- EARS C2


def test_c2_hand_case_guard_band_ignores_last_two_buckets() -> None:
    # B=3, t = 6th bucket: reference y1..y3 = 2,4,6 (the 100s are the guard band).
    # mean 4, sd sqrt((4+0+4)/2) = 2, U = 4 + 1.644854*2 = 7.289707; 9 > U.
    bounds = ears_c2([2, 4, 6, 100, 100, 9], baseline=3, alpha=0.05)
    assert bounds[:5] == [NO_BOUND] * 5
    assert bounds[5].expected == 4.0
    assert bounds[5].upper == approx(7.289707)
    assert bounds[5].alarm is True
    # 7 stays under 7.289707.
    assert ears_c2([2, 4, 6, 100, 100, 7], baseline=3, alpha=0.05)[5].alarm is False


def test_c2_edges_of_history() -> None:
    # First scorable bucket (1-based) is B+3: with B=3, only length 6 gets a bound.
    assert ears_c2([1, 2, 3, 4, 5], baseline=3) == [NO_BOUND] * 5
    assert upper_bound("ears-c2", [1, 2, 3, 4], baseline=3) == NO_BOUND
    assert upper_bound("ears-c2", [1, 2, 3, 4, 5], baseline=3).expected == 2.0


def test_c2_flat_history() -> None:
    # Reference 5,5,5 -> U = 5 whatever alpha; 6 alarms, 5 does not.
    assert ears_c2([5, 5, 5, 0, 0, 6], baseline=3)[5] == Bound(5.0, 5.0, True)
    assert ears_c2([5, 5, 5, 0, 0, 5], baseline=3)[5] == Bound(5.0, 5.0, False)


# --------------------------------------------------------------------------- EARS C3

# B=3: y1..y5 = 2,4,6,2,4. C2 references: ref(6) = y1..y3 = 2,4,6; ref(7) = y2..y4 = 4,6,2;
# ref(8) = y3..y5 = 6,2,4. Each has mean 4 and sd 2.


def test_c3_hand_case_alarm_from_previous_two_buckets() -> None:
    # C2_6 = (10-4)/2 = 3 -> max(0, 3-1) = 2; C2_7 = (8-4)/2 = 2 -> 1.
    # U_8 = max(0, 5 + 2*(1.644854 - (2+1))) = 5 - 2.710293 = 2.289707; 5 > U.
    bounds = ears_c3([2, 4, 6, 2, 4, 10, 8, 5], baseline=3, alpha=0.05)
    assert bounds[:7] == [NO_BOUND] * 7
    assert bounds[7].expected == 4.0
    assert bounds[7].upper == approx(2.289707)
    assert bounds[7].alarm is True


def test_c3_hand_case_no_alarm() -> None:
    # C2_6 = (6-4)/2 = 1 -> 0; C2_7 = 2 -> 1. U_8 = 5 + 2*(1.644854-1) = 6.289707.
    bound = ears_c3([2, 4, 6, 2, 4, 6, 8, 5], baseline=3, alpha=0.05)[7]
    assert bound.upper == approx(6.289707)
    assert bound.alarm is False


def test_c3_upper_is_floored_at_zero() -> None:
    # As the alarm case with y8 = 0: 0 + 2*(1.644854-3) = -2.710293 -> U = 0, 0 > 0 false.
    bound = ears_c3([2, 4, 6, 2, 4, 10, 8, 0], baseline=3, alpha=0.05)[7]
    assert bound == Bound(expected=4.0, upper=0.0, alarm=False)


def test_c3_too_short_history() -> None:
    assert ears_c3([2, 4, 6, 2, 4, 10, 8], baseline=3) == [NO_BOUND] * 7
    assert upper_bound("ears-c3", [2, 4, 6, 2, 4, 10], current=8, baseline=3) == NO_BOUND


def test_c3_upper_bound_needs_current() -> None:
    with pytest.raises(ValueError, match="current"):
        upper_bound("ears-c3", [2, 4, 6, 2, 4, 10, 8], baseline=3)
    bound = upper_bound("ears-c3", [2, 4, 6, 2, 4, 10, 8], current=5, baseline=3, alpha=0.05)
    assert bound.upper == approx(2.289707)


def test_c3_flat_history_does_not_divide_by_zero() -> None:
    # All flat: C2 = 0/0 -> 0, s_8 = 0 -> U = y8 = 3, no alarm (R: NaN).
    assert ears_c3([3] * 8, baseline=3)[7] == Bound(3.0, 3.0, False)
    # Spike in the scored bucket with flat references: lags 0, s = 0 -> U = 9, no alarm.
    assert ears_c3([3] * 7 + [9], baseline=3)[7] == Bound(3.0, 9.0, False)


def test_c3_rise_over_flat_reference_is_infinite_c2() -> None:
    # ref(6) = ref(7) = 3,3,3 flat, y6 = y7 = 9 -> C2 = +inf, lags = +inf.
    # ref(8) = 3,3,5: mean 11/3, sd sqrt(((2/3)^2*2 + (4/3)^2)/2) = sqrt(4/3) = 1.154701.
    # U = max(0, y + 1.154701*(z - inf)) = 0: any positive count alarms.
    bound = ears_c3([3, 3, 3, 3, 5, 9, 9, 1], baseline=3)[7]
    assert bound == Bound(expected=pytest.approx(11 / 3), upper=0.0, alarm=True)
    assert ears_c3([3, 3, 3, 3, 5, 9, 9, 0], baseline=3)[7].alarm is False


def test_c3_fractional_flat_history_is_exactly_flat() -> None:
    # Weighted counts: mean(0.7, 0.7, 0.7) must come out as 0.7 with sd 0, not a 1e-16
    # residue; otherwise C2 of the two 5s would be ~3e16 instead of +inf, and the spread
    # 1e-16*(z - 6e16) = -8 would pull U to 0 and raise an alarm out of float noise.
    # Flat: lags +inf, s_8 = 0 -> U = y8 = 1, no alarm.
    assert ears_c3([0.7] * 5 + [5, 5, 1], baseline=3)[7] == Bound(0.7, 1.0, False)


def test_c3_flat_history_with_min_sigma() -> None:
    # s = max(0, 0.5) = 0.5, C2 lags (3-3)/0.5 = 0: U = 9 + 0.5*3.090232 = 10.545116.
    bound = ears_c3([3] * 7 + [9], baseline=3, min_sigma=0.5)[7]
    assert bound.upper == approx(10.545116)
    assert bound.alarm is False
    # y6 = y7 = 9 over flat refs: C2 = 6/0.5 = 12 -> lags 11+11; s_8 = sd(3,3,5) = 1.154701.
    # U = max(0, 1 + 1.154701*(3.090232 - 22)) = 0 -> alarm.
    assert ears_c3([3, 3, 3, 3, 5, 9, 9, 1], baseline=3, min_sigma=0.5)[7].alarm is True


# --------------------------------------------------------------------------- CUSUM

# Training 3,5,4,4 -> m = 4, sqrt(m) = 2, h + k = 3.3.
CUSUM_SERIES = [3, 5, 4, 4, 6, 8, 4, 9, 10, 4, 4]
# y   z=(y-4)/2  U=ceil(2*(3.3-S_prev)+4)         S=max(0,S_prev+z-1.04)  alarm S>=2.26
# 6   1          ceil(10.6)  = 11                 0 (-0.04)               no
# 8   2          11                               0.96                    no
# 4   0          ceil(2*2.34+4 = 8.68) = 9        0 (-0.08)               no
# 9   2.5        11                               1.46                    no
# 10  3          ceil(2*1.84+4 = 7.68) = 8        3.42                    yes
# 4   0          ceil(2*(-0.12)+4 = 3.76) = 4     2.38                    yes (no reset)
# 4   0          ceil(2*0.92+4 = 5.84) = 6        1.34                    no
CUSUM_UPPERS = [11, 11, 9, 11, 8, 4, 6]
CUSUM_ALARMS = [False, False, False, False, True, True, False]


def test_cusum_hand_case() -> None:
    bounds = cusum(CUSUM_SERIES, start=4)
    assert bounds[:4] == [NO_BOUND] * 4
    assert [b.upper for b in bounds[4:]] == CUSUM_UPPERS
    assert [b.alarm for b in bounds[4:]] == CUSUM_ALARMS
    assert {b.expected for b in bounds[4:]} == {4.0}


def test_cusum_alarm_is_count_at_or_above_upper() -> None:
    # Bucket 10 has y = 4 = U and alarms: algo.cusum's alarm is S >= h, i.e. y >= U.
    bound = cusum(CUSUM_SERIES, start=4)[9]
    assert (bound.upper, bound.alarm) == (4.0, True)


def test_cusum_alarm_at_exactly_h() -> None:
    # k = 1, h = 2, m = 4 (all exact in binary): y = 10 -> z = 3, S = 0 + (3 - 1) = 2 = h.
    # U = ceil(2*(2 + 1 - 0) + 4) = 10, so y = U alarms.
    assert cusum([4, 4, 4, 4, 10], k=1, h=2, start=4)[4] == Bound(4.0, 10.0, True)
    # One less: S = 1.5 < 2.
    assert cusum([4, 4, 4, 4, 9], k=1, h=2, start=4)[4] == Bound(4.0, 10.0, False)


def test_cusum_explicit_m_monitors_from_the_start() -> None:
    bounds = cusum(CUSUM_SERIES[4:], m=4, start=0)
    assert [b.upper for b in bounds] == CUSUM_UPPERS
    assert [b.alarm for b in bounds] == CUSUM_ALARMS


def test_cusum_upper_is_floored_at_zero() -> None:
    # y = 20: z = 8, S = 6.96; next U = ceil(2*(3.3-6.96)+4) = ceil(-3.32) -> 0.
    bounds = cusum([3, 5, 4, 4, 20, 0], start=4)
    assert bounds[4] == Bound(4.0, 11.0, True)
    assert bounds[5] == Bound(4.0, 0.0, True)  # S = 6.96 - 2 - 1.04 = 3.92 >= 2.26


def test_cusum_too_short_and_default_start() -> None:
    assert cusum([1, 2, 3]) == [NO_BOUND] * 3
    assert upper_bound("cusum", [1, 2, 3]) == NO_BOUND
    # Default start = 7: bucket index 7 is the first monitored, m = mean(0..6) = 3.
    bounds = cusum(list(range(7)) + [3])
    assert bounds[7].expected == 3.0
    # U = ceil(sqrt(3)*3.3 + 3) = ceil(8.7158) = 9.
    assert bounds[7].upper == 9.0


def test_cusum_silent_training_period() -> None:
    # m = 0: U = 0; the first event gives z = +inf and the alarm never clears (no reset).
    bounds = cusum([0, 0, 0, 0, 0, 1, 0], start=3)
    assert [b.alarm for b in bounds[3:]] == [False, False, True, True]
    assert {b.upper for b in bounds[3:]} == {0.0}


def test_cusum_rejects_impossible_parameters() -> None:
    with pytest.raises(ValueError, match="start"):
        cusum([1, 2, 3], start=0)
    with pytest.raises(ValueError, match="m must"):
        cusum([1, 2, 3], m=-1.0, start=0)


# --------------------------------------------------------------------------- Student t


@pytest.mark.parametrize("x", [-3.0, -0.5, 0.0, 0.7, 2.0, 12.7])
def test_t_cdf_closed_forms(x: float) -> None:
    # df = 1 is Cauchy; df = 2 has F(x) = 1/2 + x / (2 sqrt(2 + x^2)).
    assert t_cdf(x, 1) == pytest.approx(0.5 + math.atan(x) / math.pi, abs=1e-14)
    assert t_cdf(x, 2) == pytest.approx(0.5 + x / (2 * math.sqrt(2 + x * x)), abs=1e-14)


@pytest.mark.parametrize(
    ("p", "df", "quantile"),
    [  # Printed t tables (upper-tail probability p).
        (0.05, 10, 1.812461),
        (0.01, 10, 2.763769),
        (0.05, 27, 1.703288),
        (0.01, 27, 2.472660),
        (0.025, 1, 12.706205),
        (0.01, 5, 3.364930),
    ],
)
def test_t_isf_matches_tables(p: float, df: int, quantile: float) -> None:
    assert t_isf(p, df) == approx(quantile)
    assert t_sf(t_isf(p, df), df) == pytest.approx(p, rel=1e-12)
    assert t_isf(1 - p, df) == approx(-quantile)


@pytest.mark.parametrize(("x", "df"), [(0.3, 3.0), (1.9, 7.5), (2.5, 30.0), (4.0, 11.0)])
def test_t_sf_against_numerical_integration(x: float, df: float) -> None:
    # Simpson's rule on the density over [0, x] as an independent check.
    def density(u: float) -> float:
        log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
        return math.exp(log_c - (df + 1) / 2 * math.log1p(u * u / df))

    steps = 2000
    width = x / steps
    total = (
        density(0)
        + density(x)
        + sum((4 if i % 2 else 2) * density(i * width) for i in range(1, steps))
    )
    assert t_sf(x, df) == pytest.approx(0.5 - total * width / 3, abs=1e-10)


# --------------------------------------------------------------------------- EWMA

# Flat series of 2s then one scored bucket (index 13 = min_baseline 11 + guard 2), with
# the defaults w=0.4, g=2: baseline y[0:11], n = 11, df = 10, mean 2, sd 0.
# ucl_yellow = round(qt(0.95, 10), 5) = 1.81246, t_red = qt(0.99, 10) = 2.763769.
# min_sigma = (0.4/1.81246)*(1 + 0.5*0.6^2) = 0.220695*1.18 = 0.260420
# constant = (0.1289 - (0.2414 - 0.1826*0.6^4)*ln 0.5)*0.220695 = 0.061755 < min_sigma,
# so sigma = 0.260420. Z_12 = 2, Z_13 = 0.4*y + 1.2.
# upper = (2 + 2.763769*0.260420 - 0.6*2)/0.4 = 1.519740/0.4 = 3.799349.
EWMA_FLAT = [2] * 13


def test_ewma_flat_history_red() -> None:
    bounds = ewma(EWMA_FLAT + [4])
    assert bounds[:13] == [NO_BOUND] * 13
    bound = bounds[13]
    assert bound.expected == 2.0
    assert bound.upper == approx(3.799349)
    # statistic = (2.8 - 2)/0.260420 = 3.071960 > t_red.
    assert bound.alarm and bound.warning
    assert bound.p_value == pytest.approx(t_sf(0.8 / 0.2604195, 10), rel=1e-4)
    assert bound.p_value < 0.01


def test_ewma_flat_history_yellow_and_quiet() -> None:
    # y = 3.5: statistic = 0.6/0.260420 = 2.303975, 0.01 < p < 0.05: yellow only.
    yellow = ewma(EWMA_FLAT + [3.5])[13]
    assert (yellow.alarm, yellow.warning) == (False, True)
    assert yellow.p_value == pytest.approx(0.02198, abs=1e-5)
    # y = 3: statistic = 0.4/0.260420 = 1.535979, p = 0.0778: nothing.
    quiet = ewma(EWMA_FLAT + [3])[13]
    assert (quiet.alarm, quiet.warning) == (False, False)
    assert quiet.p_value == pytest.approx(0.07778, abs=1e-5)


def test_ewma_hand_case_with_spread() -> None:
    # y[0:13] = 0,4,0,4,...,0 then y13 = 5; defaults. Baseline y[0:11]: six 0s, five 4s.
    # mean 20/11 = 1.818182; squared deviations 5*(2.181818)^2 + 6*(1.818182)^2 = 43.636364,
    # sd = sqrt(43.636364/10) = 2.088932.
    # c = sqrt(0.4/1.6 + 1/11 - 2*0.6^3*(1 - 0.6^11)/11) = sqrt(0.340909 - 0.039130)
    #   = 0.549344; sigma = 2.088932*0.549344 + 0.061755 = 1.209297 (floor 0.260420).
    # Z_0..Z_12 alternate towards 1.5/2.5: Z_12 = 1.496735 (0.4*y + 0.6*Z each step).
    # upper = (1.818182 + 2.763769*1.209297 - 0.6*1.496735)/0.4 = 4.262360/0.4 = 10.655901.
    # Z_13 = 0.4*5 + 0.6*1.496735 = 2.898041, statistic = 1.079859/1.209297 = 0.892964.
    bound = ewma([0, 4] * 6 + [0, 5])[13]
    assert bound.expected == pytest.approx(20 / 11)
    assert bound.upper == pytest.approx(10.655901, abs=2e-6)
    assert bound.p_value == pytest.approx(t_sf(0.892964, 10), abs=1e-6)
    assert (bound.alarm, bound.warning) == (False, False)


def test_ewma_baseline_grows_to_its_maximum() -> None:
    counts = list(range(40))
    bounds = ewma(counts)
    # Index 13: baseline y[0:11] -> mean 5. Index 35: n = min(33, 28), y[5:33] -> 18.5.
    assert bounds[13].expected == 5.0
    assert bounds[20].expected == pytest.approx(sum(range(18)) / 18)
    assert bounds[35].expected == 18.5
    assert bounds[12] == NO_BOUND


def test_ewma_caps_an_outlying_smoothed_value() -> None:
    # After a spike of 100 the smoothed value is reset to 2 + 2.76377*0.260420, so the
    # next bucket's bound stays positive instead of 41.2 dragging it far below zero.
    bounds = ewma(EWMA_FLAT + [100, 2])
    assert bounds[13].alarm
    capped = 2 + 2.76377 * (0.4 / 1.81246) * 1.18
    # Index 14: baseline y[0:12], n = 12, df = 11, still flat, so sigma is the floor again.
    sigma = (0.4 / round(t_isf(0.05, 11), 5)) * 1.18
    expected_upper = (2 + t_isf(0.01, 11) * sigma - 0.6 * capped) / 0.4
    assert bounds[14].upper == pytest.approx(expected_upper, abs=1e-5)
    assert bounds[14].upper > 0


def test_ewma_rejects_bad_parameters() -> None:
    with pytest.raises(ValueError, match="baseline"):
        ewma([1] * 30, baseline=7)  # shorter than min_baseline 11
    with pytest.raises(ValueError, match="w must"):
        ewma([1] * 30, w=0)


# --------------------------------------------------------------------------- dispatch


def test_score_series_dispatches_by_name() -> None:
    counts = [1, 1, 1, 3, 3, 1, 2, 4, 2, 6, 5, 2, 3, 1, 0, 2]
    assert score_series("ears-c1", counts, baseline=7, alpha=0.05) == ears_c1(
        counts, baseline=7, alpha=0.05
    )
    assert score_series("ears-c2", counts) == ears_c2(counts)
    assert score_series("ears-c3", counts, baseline=3) == ears_c3(counts, baseline=3)
    assert score_series("cusum", counts, start=5) == cusum(counts, start=5)
    assert score_series("ewma", counts) == ewma(counts)


def test_unknown_method_and_bad_input_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown scoring method 'ears-c4'"):
        score_series("ears-c4", [1, 2, 3])
    with pytest.raises(ValueError, match="unknown scoring method"):
        upper_bound("farrington", [1, 2, 3])
    with pytest.raises(ValueError, match=r"counts\[1\]"):
        ears_c1([1, -1, 3])
    with pytest.raises(ValueError, match="baseline"):
        ears_c1([1, 2, 3], baseline=2)
    with pytest.raises(ValueError, match="alpha"):
        ears_c2([1, 2, 3], alpha=1.0)
    with pytest.raises(ValueError, match="current"):
        upper_bound("ears-c1", [1, 2, 3], current=math.nan)
    with pytest.raises(ValueError, match=r"history\[6\]"):
        upper_bound("ears-c1", [1, 2, 3, 4, 5, 6, -1, 1, 2, 3])


# --------------------------------------------------------------------------- properties

COUNTS = st.lists(st.integers(min_value=0, max_value=30), max_size=45)


@st.composite
def method_and_params(draw: st.DrawFn) -> tuple[str, dict[str, float]]:
    method = draw(st.sampled_from(METHODS))
    if method.startswith("ears-"):
        return method, {
            "baseline": draw(st.integers(3, 7)),
            "alpha": draw(st.sampled_from([0.001, 0.025, 0.05, 0.3])),
            "min_sigma": draw(st.sampled_from([0.0, 0.5, 2.0])),
        }
    if method == "cusum":
        start = draw(st.integers(0, 8))
        m = draw(st.one_of(st.none(), st.floats(0, 20))) if start else draw(st.floats(0, 20))
        return method, {"start": start, "m": m, "h": draw(st.sampled_from([2.26, 0.5, 4.0]))}
    if method in ("poisson", "negbin"):
        return method, {"baseline": draw(st.integers(3, 10)), "guard": draw(st.integers(0, 3)),
                        "alpha": draw(st.sampled_from([0.001, 0.05, 0.3]))}
    if method in ("glrpois", "glr"):
        return method, {"baseline": draw(st.integers(3, 10)), "guard": draw(st.integers(0, 3)),
                        "window": draw(st.integers(1, 8)), "threshold": draw(st.sampled_from([0.5, 3.0, 7.0]))}
    min_baseline = draw(st.integers(3, 8))
    return method, {
        "min_baseline": min_baseline,
        "baseline": draw(st.integers(min_baseline, 12)),
        "guard": draw(st.integers(0, 3)),
        "w": draw(st.sampled_from([0.4, 0.9, 1.0])),
    }


@settings(max_examples=300, deadline=None)
@given(counts=COUNTS, chosen=method_and_params())
def test_upper_bound_agrees_with_series_at_every_position(
    counts: list[int], chosen: tuple[str, dict[str, float]]
) -> None:
    method, params = chosen
    series = score_series(method, counts, **params)
    assert len(series) == len(counts)
    for t, count in enumerate(counts):
        assert upper_bound(method, counts[:t], current=count, **params) == series[t]
        if method != "ears-c3":
            # Without the live count the bound is the same, only the verdict is withheld.
            blind = upper_bound(method, counts[:t], **params)
            assert (blind.expected, blind.upper, blind.alarm) == (
                series[t].expected,
                series[t].upper,
                False,
            )


@settings(max_examples=200, deadline=None)
@given(
    counts=COUNTS,
    baseline=st.integers(3, 7),
    method=st.sampled_from(["ears-c1", "ears-c2"]),
    min_sigma=st.sampled_from([0.0, 0.5]),
)
def test_c1_c2_alarm_means_count_above_upper(
    counts: list[int], baseline: int, method: str, min_sigma: float
) -> None:
    bounds = score_series(method, counts, baseline=baseline, min_sigma=min_sigma)
    for count, bound in zip(counts, bounds, strict=True):
        if bound.upper is not None:
            assert bound.alarm == (count > bound.upper)
            assert bound.upper >= bound.expected
