"""Level rules and hysteresis as pure functions, and the `scoring` config that sets them."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.scoring.levels import Bucket, Estimate, Hysteresis, close_bucket, judge, level_of, rise
from shared.config import ConfigError, parse
from shared.scoring_config import ScoringSettings

RULES = ScoringSettings()
CALM = Estimate(expected=1.7, upper=3.3, alarm=False, method="ears-c2")
ALARM = Estimate(expected=1.7, upper=3.3, alarm=True, method="ears-c2")


def level(bucket: Bucket, est: Estimate = CALM, rules: ScoringSettings = RULES) -> str:
    return judge(bucket, est, rules)[0]


@pytest.mark.parametrize("bucket, est, expected", [
    (Bucket(1, 1.0), CALM, "normal"),
    (Bucket(1, 1.0, severity=3), CALM, "normal"),
    (Bucket(1, 1.0, severity=4), CALM, "siaga"),
    (Bucket(1, 1.0, severity=5), CALM, "awas"),
    (Bucket(1, 1.0, casualties=1), CALM, "awas"),
    (Bucket(4, 4.0), ALARM, "waspada"),
    (Bucket(7, 6.6), ALARM, "waspada"),      # 6.6 is exactly 2 × 3.3: not above it
    (Bucket(7, 6.7), ALARM, "siaga"),
    (Bucket(2, 2.0, alarmed=("65.01", "65.71")), CALM, "siaga"),
    (Bucket(2, 2.0, alarmed=("65.01",)), CALM, "normal"),
    (Bucket(9, 9.0, severity=5), ALARM, "awas"),
])
def test_default_rules(bucket, est, expected):
    assert level(bucket, est) == expected


_RULESETS = [RULES, ScoringSettings(severity={"awas_at": 4, "siaga_at": 3, "casualties": "siaga"}),
             ScoringSettings(severity={"casualties": "normal"}, surge_factor=1.5, province_alarm_kabkota=1)]


@given(st.sampled_from(_RULESETS),
       st.builds(Bucket, st.integers(0, 30), st.sampled_from([0.0, 0.5, 3.3, 6.6, 6.7, 12.0]), st.integers(0, 5),
                 st.integers(0, 3), st.lists(st.sampled_from(["65.01", "65.03", "65.71"]), max_size=3).map(tuple)),
       st.builds(Estimate, st.just(1.7), st.sampled_from([0.0, 3.3, 5.0]), st.booleans(), st.just("ears-c2")))
def test_the_level_without_reasons_is_the_level_of_the_reasons(rules, bucket, est):
    assert level_of(bucket, est, rules) == judge(bucket, est, rules)[0]


def test_reasons_strongest_first_and_the_count_always_there():
    lvl, reasons = judge(Bucket(9, 9.0, severity=5), ALARM, RULES)
    assert [r.code for r in reasons] == ["severity", "count", "surge"]
    _, calm = judge(Bucket(0, 0.0), CALM, RULES)
    assert [r.code for r in calm] == ["count"]


def test_rules_are_configurable():
    rules = ScoringSettings(severity={"awas_at": 5, "siaga_at": 3, "casualties": "siaga"},
                            surge_factor=3, province_alarm_kabkota=3)
    assert level(Bucket(1, 1.0, severity=3), rules=rules) == "siaga"
    assert level(Bucket(1, 1.0, casualties=2), rules=rules) == "siaga"
    assert level(Bucket(7, 6.7), ALARM, rules) == "waspada"
    assert level(Bucket(2, 2.0, alarmed=("65.01", "65.71")), rules=rules) == "normal"
    assert level(Bucket(1, 1.0, casualties=2), rules=ScoringSettings(severity={"casualties": "normal"})) == "normal"


def test_hysteresis_rises_at_once_and_falls_after_quiet_buckets():
    h = Hysteresis()
    rise(h, "siaga")
    assert h.level == "siaga"
    close_bucket(h, "siaga", 2)           # the surge day itself closes: not quiet
    close_bucket(h, "waspada", 2)         # quieter, but still 1 of 2
    assert (h.level, h.quiet) == ("siaga", 1)
    close_bucket(h, "normal", 2)          # 2 of 2: fall to the highest of the quiet buckets
    assert (h.level, h.quiet) == ("waspada", 0)
    close_bucket(h, "normal", 2)
    close_bucket(h, "normal", 2)
    assert h.level == "normal"


def test_hysteresis_a_new_surge_resets_the_quiet_count():
    h = Hysteresis(level="waspada")
    close_bucket(h, "normal", 2)
    close_bucket(h, "waspada", 2)
    close_bucket(h, "normal", 2)
    assert (h.level, h.quiet) == ("waspada", 1)


def test_zero_hysteresis_falls_at_the_next_bucket():
    h = Hysteresis(level="awas")
    close_bucket(h, "normal", 0)
    assert h.level == "normal"


def test_a_typo_in_the_scoring_section_is_named():
    with pytest.raises(ConfigError) as e:
        parse("scoring:\n  hysterisis_buckets: 3\n")
    assert "scoring.hysterisis_buckets: unknown key" in str(e.value)
    with pytest.raises(ConfigError) as e:
        parse("scoring:\n  method: ears-c4\n")
    assert "scoring.method" in str(e.value)


def test_a_bad_vulnerability_map_is_named_with_its_line(tmp_path):
    peta = tmp_path / "peta.csv"
    peta.write_text("region_code,category,daily_rate\n65.71,*,0.8\n99.99,*,1\n")
    with pytest.raises(ConfigError) as e:
        parse(f"scoring:\n  vulnerability_map: {peta}\n")
    assert "scoring.vulnerability_map" in str(e.value) and "line 3" in str(e.value)


def test_history_is_long_enough_for_the_method():
    assert ScoringSettings(method="ears-c2").history_buckets == 35
    # The default GLR: 28-bucket reference, guard 2, and two 7-bucket windows to replay.
    assert ScoringSettings().history_buckets == 44
    assert ScoringSettings(method="ewma", baseline=56).history_buckets == 58
    assert ScoringSettings(method="ears-c3", baseline=30).method_params() == {
        "baseline": 30, "alpha": 0.001, "min_sigma": 0.5}


def test_a_false_alarm_budget_sets_the_threshold():
    # Bounds: the budget spread over a year's buckets.
    assert ScoringSettings(method="negbin", false_alarms_per_year=0.365).method_params()["alpha"] == pytest.approx(0.001)
    assert ScoringSettings(method="poisson", bucket="hour", false_alarms_per_year=0.876).bound_alpha == pytest.approx(1e-4)
    # GLR: from the measured table; a smaller budget needs a higher threshold.
    loose = ScoringSettings(false_alarms_per_year=1.0).method_params()["threshold"]
    tight = ScoringSettings(false_alarms_per_year=0.1).method_params()["threshold"]
    assert 3.0 <= loose < tight <= 14.0
    from shared.scoring_config import GLR_FALSE_ALARMS, threshold_for_budget

    measured = dict(GLR_FALSE_ALARMS)
    assert measured[threshold_for_budget(measured[6.0])] == measured[6.0]


def test_a_budget_and_its_threshold_together_are_refused_by_name():
    for text, words in (("scoring:\n  false_alarms_per_year: 1\n  glr: {threshold: 6}\n", "glr.threshold"),
                        ("scoring:\n  method: negbin\n  false_alarms_per_year: 1\n  alpha: 0.01\n", "alpha"),
                        ("scoring:\n  method: ears-c2\n  false_alarms_per_year: 1\n", "ears-c2")):
        with pytest.raises(ConfigError) as e:
            parse(text)
        assert "false_alarms_per_year" in str(e.value) and words in str(e.value)
