"""Reasons in words, in Bahasa Indonesia (default) or English, for the coordinator who has
to decide what to do: "7 laporan hari ini vs perkiraan 1,7, batas atas 3,3 (EARS C2,
baseline 7 hari)" / "7 reports today vs expected 1.7, upper bound 3.3 (EARS C2, 7-day
baseline)".
"""

from __future__ import annotations

from typing import Callable

from services.scoring.levels import Reason
from shared.regions import registry

METHOD_NAMES = {"ears-c1": "EARS C1", "ears-c2": "EARS C2", "ears-c3": "EARS C3", "cusum": "CUSUM", "ewma": "EWMA"}


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


def _count_line(p: dict, lang: str) -> str:
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


def _regions(codes: list[str]) -> str:
    names = []
    for code in codes:
        name = registry().name(code)
        names.append(f"{name} ({code})" if name else code)
    return ", ".join(names)


_ID: dict[str, Callable[[dict], str]] = {
    "count": lambda p: _count_line(p, "id"),
    "surge": lambda p: f"lebih dari {_count(p['factor'], 'id')}× batas atas",
    "severity": lambda p: f"laporan tingkat keparahan {p['severity']}",
    "casualties": lambda p: f"laporan dengan korban jiwa/luka ({p['casualties']} orang)",
    "province_alarms": lambda p: f"alarm di {len(p['regions'])} kabupaten/kota: {_regions(p['regions'])}",
    "held": lambda p: f"level {p['level']} dipertahankan: {p['quiet']} dari {p['needed']} {_unit(p['bucket'], 'id')} tenang",
    "fell": lambda p: f"turun dari {p['from']} setelah {p['quiet']} {_unit(p['bucket'], 'id')} tenang",
}

_EN: dict[str, Callable[[dict], str]] = {
    "count": lambda p: _count_line(p, "en"),
    "surge": lambda p: f"more than {_count(p['factor'], 'en')}× the upper bound",
    "severity": lambda p: f"severity {p['severity']} report",
    "casualties": lambda p: f"report with casualties ({p['casualties']})",
    "province_alarms": lambda p: f"alarms in {len(p['regions'])} kabupaten/kota: {_regions(p['regions'])}",
    "held": lambda p: f"{p['level']} held: {p['quiet']} of {p['needed']} quiet {_unit(p['bucket'], 'en', p['needed'])}",
    "fell": lambda p: f"down from {p['from']} after {p['quiet']} quiet {_unit(p['bucket'], 'en', p['quiet'])}",
}


def render(reasons: list[Reason], lang: str = "id") -> list[str]:
    """The reasons as sentences, in the order given."""
    table = _ID if lang == "id" else _EN
    return [table[r.code](r.params) for r in reasons]
