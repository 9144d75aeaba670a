"""Reasons in words, in Bahasa Indonesia (default) or English, for the coordinator who has
to decide what to do: "7 laporan hari ini vs perkiraan 1,7, batas atas 3,3 (EARS C2,
baseline 7 hari)" / "7 reports today vs expected 1.7, upper bound 3.3 (EARS C2, 7-day
baseline)".
"""

from __future__ import annotations

from typing import Callable

from services.scoring.levels import Reason
from shared.regions import registry

METHOD_NAMES = {"ears-c1": "EARS C1", "ears-c2": "EARS C2", "ears-c3": "EARS C3", "cusum": "CUSUM", "ewma": "EWMA",
                "poisson": "Poisson", "negbin": "binomial negatif", "glrpois": "GLR Poisson", "glr": "GLR"}
# Methods whose p-value is the chance of the count without a real event (services/scoring/counts.py).
_RARITY_METHODS = ("poisson", "negbin", "glrpois", "glr")
_BUCKETS_PER_YEAR = {"day": 365.0, "hour": 8760.0}


def number(x: float, lang: str) -> str:
    """One decimal, with the decimal comma in Indonesian: 1,7 / 1.7."""
    text = f"{x:.1f}"
    return text.replace(".", ",") if lang == "id" else text


def _count(x: float, lang: str) -> str:
    return str(int(x)) if float(x).is_integer() else number(x, lang)


def _unit(bucket: str, lang: str, n: int | None = None) -> str:
    if lang == "id":
        return "hari" if bucket == "day" else "jam"
    word = "day" if bucket == "day" else "hour"
    return word if n in (None, 1) else word + "s"


def _source(p: dict, lang: str) -> str:
    """Where expected and upper came from: the method and its baseline, or the prior."""
    unit = _unit(p["bucket"], lang)
    prior = p.get("prior")
    if prior is None:
        name = METHOD_NAMES.get(p["method"], p["method"])
        if p["method"] == "cusum":
            return name
        return f"{name}, baseline {p['baseline']} {unit}" if lang == "id" else f"{name}, {p['baseline']}-{unit} baseline"
    rate = number(p["prior_daily_rate"], lang)
    if lang == "id":
        what = {"vulnerability_map": f"peta rawan konflik {rate}/hari",
                "province_rate": f"laju provinsi dibagi rata per kabupaten/kota, {rate}/hari",
                "default_rate": f"laju bawaan {rate}/hari"}[prior]
        return f"riwayat belum cukup: {what}, Poisson"
    what = {"vulnerability_map": f"vulnerability map {rate}/day",
            "province_rate": f"province rate shared among its kabupaten/kota, {rate}/day",
            "default_rate": f"default rate {rate}/day"}[prior]
    return f"not enough history: {what}, Poisson"


def _round_years(x: float) -> int:
    """1, 2, ... 9, then two significant digits: 30, 45, 120 — a number people can hold."""
    if x < 10:
        return max(1, round(x))
    digits = 10 ** (len(str(int(x))) - 2)
    return int(round(x / digits) * digits)


def rarity(p_value: float, bucket: str, lang: str) -> str:
    """How often a count this large turns up without a real event: "sekitar sekali dalam 30
    tahun" / "about once in 30 years"."""
    per_year = p_value * _BUCKETS_PER_YEAR[bucket]
    if p_value >= 0.2:
        return "angka sebesar ini biasa" if lang == "id" else "a count like this is common"
    if per_year < 1e-3:
        return ("tanpa kejadian nyata, angka sebesar ini muncul kurang dari sekali dalam 1.000 tahun"
                if lang == "id" else "without a real event, a count this large comes less than once in 1,000 years")
    years = 1 / per_year
    if years >= 1:
        n, id_unit, en_unit = _round_years(years), "tahun", "year"
    elif years * 12 >= 1:
        n, id_unit, en_unit = _round_years(years * 12), "bulan", "month"
    else:
        n, id_unit, en_unit = _round_years(years * 365), "hari", "day"
    n_text = f"{n:,}".replace(",", ".") if lang == "id" else f"{n:,}"
    if lang == "id":
        return f"tanpa kejadian nyata, angka sebesar ini muncul sekitar sekali dalam {n_text} {id_unit}"
    unit = en_unit if n == 1 else en_unit + "s"
    return f"without a real event, a count this large comes about once in {n_text} {unit}"


def _count_line(p: dict, lang: str) -> str:
    if p.get("p_value") is not None and (p["method"] in _RARITY_METHODS and p.get("prior") is None):
        return _plain_count_line(p, lang)
    observed, weighted = p["observed"], p["weighted"]
    when = ("hari ini" if p["bucket"] == "day" else "jam ini") if lang == "id" else \
        ("today" if p["bucket"] == "day" else "this hour")
    if lang == "id":
        head = f"{observed} laporan {when}"
        if weighted != observed:
            head += f" (bobot {_count(weighted, lang)})"
        return f"{head} vs perkiraan {number(p['expected'], lang)}, batas atas {number(p['upper'], lang)} ({_source(p, lang)})"
    head = f"{observed} report{'' if observed == 1 else 's'} {when}"
    if weighted != observed:
        head += f" (weighted {_count(weighted, lang)})"
    return f"{head} vs expected {number(p['expected'], lang)}, upper bound {number(p['upper'], lang)} ({_source(p, lang)})"


def _plain_count_line(p: dict, lang: str) -> str:
    """The count, what is usual, the alarm line, and how rare the count is without an event:
    "7 laporan hari ini; biasanya 0,5 per hari, batas alarm 3,3; tanpa kejadian nyata, angka
    sebesar ini muncul sekitar sekali dalam 30 tahun (GLR, baseline 28 hari)"."""
    observed, weighted, bucket = p["observed"], p["weighted"], p["bucket"]
    unit = _unit(bucket, lang)
    rare = rarity(p["p_value"], bucket, lang)
    if lang == "id":
        head = f"{observed} laporan {'hari ini' if bucket == 'day' else 'jam ini'}"
        if weighted != observed:
            head += f" (bobot {_count(weighted, lang)})"
        return (f"{head}; biasanya {number(p['expected'], lang)} per {unit}, batas alarm "
                f"{number(p['upper'], lang)}; {rare} ({_source(p, lang)})")
    head = f"{observed} report{'' if observed == 1 else 's'} {'today' if bucket == 'day' else 'this hour'}"
    if weighted != observed:
        head += f" (weighted {_count(weighted, lang)})"
    return (f"{head}; usually {number(p['expected'], lang)} a {unit}, alarm line {number(p['upper'], lang)}; "
            f"{rare} ({_source(p, lang)})")


def _regions(codes: list[str]) -> str:
    names = []
    for code in codes:
        name = registry().name(code)
        names.append(f"{name} ({code})" if name else code)
    return ", ".join(names)


# Each reason in both languages side by side (Indonesian first), so neither falls behind.
_LINES: dict[str, tuple[Callable[[dict], str], Callable[[dict], str]]] = {
    "count": (lambda p: _count_line(p, "id"),
              lambda p: _count_line(p, "en")),
    "surge": (lambda p: f"lebih dari {_count(p['factor'], 'id')}× batas atas",
              lambda p: f"more than {_count(p['factor'], 'en')}× the upper bound"),
    "severity": (lambda p: f"laporan tingkat keparahan {p['severity']}",
                 lambda p: f"severity {p['severity']} report"),
    "casualties": (lambda p: f"laporan dengan korban jiwa/luka ({p['casualties']} orang)",
                   lambda p: f"report with casualties ({p['casualties']})"),
    "province_alarms": (lambda p: f"alarm di {len(p['regions'])} kabupaten/kota: {_regions(p['regions'])}",
                        lambda p: f"alarms in {len(p['regions'])} kabupaten/kota: {_regions(p['regions'])}"),
    "held": (lambda p: f"level {p['level']} dipertahankan: {p['quiet']} dari {p['needed']} {_unit(p['bucket'], 'id')} tenang",
             lambda p: f"{p['level']} held: {p['quiet']} of {p['needed']} quiet {_unit(p['bucket'], 'en', p['needed'])}"),
    "fell": (lambda p: f"turun dari {p['from']} setelah {p['quiet']} {_unit(p['bucket'], 'id')} tenang",
             lambda p: f"down from {p['from']} after {p['quiet']} quiet {_unit(p['bucket'], 'en', p['quiet'])}"),
    "withdrawn": (lambda p: f"turun dari {p['from']}: laporan yang menaikkannya ditolak",
                  lambda p: f"down from {p['from']}: a report that raised it was rejected"),
}


def render(reasons: list[Reason], lang: str = "id") -> list[str]:
    """The reasons as sentences, in the order given."""
    which = 0 if lang == "id" else 1
    return [_LINES[r.code][which](r.params) for r in reasons]
