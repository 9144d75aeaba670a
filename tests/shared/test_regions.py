"""The Kemendagri region registry: its size, Kalimantan Utara as the contract names it,
roll-ups to kabupaten/kota and province, scope prefixes, and each province's clock."""

from __future__ import annotations

from datetime import timedelta

import pytest

from shared.regions import CODE_PATTERN, WIB, WIT, WITA, in_scope, registry


@pytest.fixture(scope="module")
def reg():
    return registry()


def test_registry_has_the_full_official_counts(reg):
    assert len(reg.codes(1)) == 38
    assert len(reg.codes(2)) == 514
    assert len(reg.codes(3)) >= 7285
    assert len(reg.codes(4)) > 80_000


def test_kalimantan_utara(reg):
    assert reg.name("65") == "Kalimantan Utara"
    assert reg.children("65") == ["65.01", "65.02", "65.03", "65.04", "65.71"]
    names = {c: reg.name(c) for c in reg.children("65")}
    assert "Bulungan" in names["65.01"] and "Malinau" in names["65.02"] and "Nunukan" in names["65.03"]
    assert "Tana Tidung" in names["65.04"] and names["65.71"] == "Kota Tarakan"


def test_every_code_is_dotted_and_its_parent_exists(reg):
    for level in (2, 3):
        for code in reg.codes(level):
            assert CODE_PATTERN.match(code), code
            assert reg.exists(code.rsplit(".", 1)[0]), code


def test_levels(reg):
    assert [reg.level(c) for c in ("65", "65.71", "65.71.02", "65.71.02.1001")] == [1, 2, 3, 4]


@pytest.mark.parametrize(("code", "kabkota", "province"), [
    ("65.71.02.1001", "65.71", "65"),  # desa/kelurahan
    ("65.01.01.1001", "65.01", "65"),
    ("65.71.02", "65.71", "65"),  # kecamatan
    ("65.71", "65.71", "65"),  # kabupaten/kota itself
    ("65", "65", "65"),  # a province stays itself
    ("31.71.01", "31.71", "31"),
])
def test_roll_up(reg, code, kabkota, province):
    assert reg.exists(code)
    assert reg.kabkota_of(code) == kabkota
    assert reg.province_of(code) == province


def test_every_desa_rolls_up_to_an_existing_kecamatan_and_kabkota(reg):
    for code in reg.children("65.71.02") + reg.children("65.01.01"):
        assert reg.level(code) == 4
        assert reg.exists(code[:8]) and reg.exists(reg.kabkota_of(code))


@pytest.mark.parametrize("code", ["99", "65.99", "65.71.99", "65.71.02.9999", "6571", "", "65.", "65.71.02.1001.1"])
def test_unknown_codes_do_not_exist(reg, code):
    assert not reg.exists(code)


@pytest.mark.parametrize(("code", "tz", "hours"), [
    ("31", WIB, 7), ("31.71", WIB, 7), ("32.73", WIB, 7), ("11", WIB, 7), ("61", WIB, 7), ("62", WIB, 7),
    ("65", WITA, 8), ("65.71.02", WITA, 8), ("51", WITA, 8), ("64", WITA, 8), ("73", WITA, 8),
    ("91", WIT, 9), ("81", WIT, 9), ("96", WIT, 9), ("94", WIT, 9),
])
def test_time_zones(reg, code, tz, hours):
    assert reg.timezone_of(code) is tz
    assert tz.utcoffset(None) == timedelta(hours=hours)


def test_every_province_has_one_of_the_three_zones(reg):
    zones = {reg.timezone_of(p).tzname(None) for p in reg.codes(1)}
    assert zones == {"WIB", "WITA", "WIT"}


@pytest.mark.parametrize(("code", "prefixes", "inside"), [
    ("65.71.02", ["65"], True),
    ("65", ["65"], True),
    ("65.71.02.1001", ["65.71"], True),
    ("65.71", ["65.71.02"], False),
    ("65.71", ["65.7"], False),  # prefixes match on dot boundaries only
    ("32.73.01", ["32.04", "32.73"], True),
    ("32.74", ["32.04", "32.73"], False),
    ("65", [], False),
])
def test_in_scope(code, prefixes, inside):
    assert in_scope(code, prefixes) is inside
