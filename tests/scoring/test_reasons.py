"""Reasons in words, in Bahasa Indonesia and in English."""

from __future__ import annotations

from services.scoring.levels import Bucket, Estimate, judge
from services.scoring.reasons import render
from shared.scoring_config import ScoringSettings

C2 = Estimate(expected=1.7, upper=3.3, alarm=True, method="ears-c2")


def words(counts: Bucket, est: Estimate, **settings) -> list[str]:
    settings.setdefault("method", est.method if est.method != "poisson" else "ears-c2")
    rules = ScoringSettings(**settings)
    return render(judge(counts, est, rules)[1], rules.language)


def test_the_count_in_indonesian_and_english():
    assert words(Bucket(7, 7.0), C2) == [
        "7 laporan hari ini vs perkiraan 1,7, batas atas 3,3 (EARS C2, baseline 7 hari)",
        "lebih dari 2× batas atas",
    ]
    assert words(Bucket(7, 7.0), C2, language="en") == [
        "7 reports today vs expected 1.7, upper bound 3.3 (EARS C2, 7-day baseline)",
        "more than 2× the upper bound",
    ]


def test_weighted_counts_and_hourly_buckets():
    assert words(Bucket(5, 3.5), C2, bucket="hour") == [
        "5 laporan jam ini (bobot 3,5) vs perkiraan 1,7, batas atas 3,3 (EARS C2, baseline 7 jam)"]
    assert words(Bucket(1, 0.5), C2, bucket="hour", language="en") == [
        "1 report this hour (weighted 0.5) vs expected 1.7, upper bound 3.3 (EARS C2, 7-hour baseline)"]


def test_severity_and_casualties():
    assert words(Bucket(1, 1.0, severity=5), C2)[0] == "laporan tingkat keparahan 5"
    assert words(Bucket(1, 1.0, severity=5), C2, language="en")[0] == "severity 5 report"
    assert words(Bucket(1, 1.0, casualties=3), C2, language="en")[0] == "report with casualties (3)"


def test_the_fallback_is_named():
    prior = Estimate(expected=0.5, upper=4.0, alarm=True, method="poisson", prior="default_rate", prior_daily_rate=0.5)
    assert words(Bucket(5, 5.0), prior)[0] == (
        "5 laporan hari ini vs perkiraan 0,5, batas atas 4,0 (riwayat belum cukup: laju bawaan 0,5/hari, Poisson)")
    peta = Estimate(expected=0.8, upper=5.0, alarm=True, method="poisson", prior="vulnerability_map", prior_daily_rate=0.8)
    assert words(Bucket(6, 6.0), peta, language="en")[0] == (
        "6 reports today vs expected 0.8, upper bound 5.0 (not enough history: vulnerability map 0.8/day, Poisson)")
    province = Estimate(expected=0.4, upper=3.0, alarm=True, method="poisson", prior="province_rate", prior_daily_rate=0.4)
    assert "laju provinsi dibagi rata per kabupaten/kota, 0,4/hari" in words(Bucket(4, 4.0), province)[0]


def test_province_alarms_name_the_regions():
    assert words(Bucket(4, 4.0, alarmed=("65.01", "65.71")), C2)[0] == (
        "alarm di 2 kabupaten/kota: Kabupaten Bulungan (65.01), Kota Tarakan (65.71)")


def test_other_methods_are_named():
    cusum = Estimate(expected=1.0, upper=4.0, alarm=True, method="cusum")
    assert words(Bucket(5, 5.0), cusum, method="cusum", language="en")[0].endswith("(CUSUM)")
    ewma = Estimate(expected=1.0, upper=4.0, alarm=True, method="ewma")
    assert words(Bucket(5, 5.0), ewma, method="ewma")[0].endswith("(EWMA, baseline 28 hari)")


GLR = Estimate(expected=0.5, upper=2.6, alarm=True, method="glr", p_value=9e-5)


def test_a_count_method_says_what_is_usual_and_how_rare_the_count_is():
    assert words(Bucket(7, 7.0), GLR)[0] == (
        "7 laporan hari ini; biasanya 0,5 per hari, batas alarm 2,6; tanpa kejadian nyata, angka sebesar "
        "ini muncul sekitar sekali dalam 30 tahun (GLR, baseline 28 hari)")
    assert words(Bucket(7, 7.0), GLR, language="en")[0] == (
        "7 reports today; usually 0.5 a day, alarm line 2.6; without a real event, a count this large "
        "comes about once in 30 years (GLR, 28-day baseline)")


def test_rarity_in_months_days_and_beyond_a_thousand_years():
    from services.scoring.reasons import rarity

    assert rarity(0.003, "day", "id").endswith("sekali dalam 11 bulan")
    assert rarity(0.05, "day", "en").endswith("about once in 20 days")
    assert rarity(1e-7, "day", "id").endswith("kurang dari sekali dalam 1.000 tahun")
    assert rarity(0.5, "day", "en") == "a count like this is common"
    # An hourly bucket has 24 chances a day: the same p is 24 times less rare.
    assert rarity(9e-5 / 24, "hour", "en").endswith("about once in 30 years")
