"""The vendored region shapes: every kabupaten/kota and province of the registry has one, the
file is small, and it says where it came from."""

from __future__ import annotations

from pathlib import Path

from shared.boundaries import boundaries
from shared.regions import registry

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "boundaries.json.gz"


def test_every_kabupaten_kota_and_province_has_a_shape():
    b, reg = boundaries(), registry()
    kabkota, provinces = reg.codes(2), reg.codes(1)
    assert len(kabkota) == 514 and len(provinces) == 38
    missing = [c for c in kabkota + provinces if b.get(c) is None or not b.get(c).rings]
    assert missing == []
    # Each shape lies inside Indonesia (the reports' box, lat -11…6.5, lon 94…141.5, with 0.1°
    # to spare: Rote Ndao's southern islets reach -11.01).
    for code in kabkota + provinces:
        x0, y0, x1, y1 = b.get(code).bbox
        assert 94 * b.scale <= x0 < x1 <= 141.5 * b.scale and -11.1 * b.scale <= y0 < y1 <= 6.5 * b.scale, code


def test_a_kabupaten_lies_inside_its_province():
    b = boundaries()
    for kab in registry().children("65"):
        kx0, ky0, kx1, ky1 = b.get(kab).bbox
        px0, py0, px1, py1 = b.get("65").bbox
        slack = b.scale // 100  # the two were simplified separately
        assert px0 - slack <= kx0 and kx1 <= px1 + slack and py0 - slack <= ky0 and ky1 <= py1 + slack, kab


def test_the_data_is_small_and_attributed():
    assert DATA.stat().st_size < 10 * 1024 * 1024
    b = boundaries()
    assert "wilayah_boundaries" in b.source and "MIT" in b.license
    notice = (Path(__file__).resolve().parents[2] / "NOTICE").read_text()
    assert "cahyadsn/wilayah_boundaries" in notice and "MIT" in notice


def test_a_gps_point_is_placed_in_its_kabupaten_kota_or_nowhere():
    from services.ingest.field_reports import gps_places

    b = boundaries()
    assert b.locate(3.3, 117.6) == "65.71"          # Tarakan island
    assert b.locate(2.84, 117.37) == "65.01"        # Tanjung Selor, Bulungan
    assert b.locate(-6.2, 106.82) == "31.71"        # Jakarta Pusat
    assert b.locate(3.3, 118.5) is None             # the Sulawesi Sea
    assert b.locate(1.3, 103.8) is None             # Singapore
    tarakan = {"latitude": 3.3, "longitude": 117.6}
    assert gps_places(tarakan, ["65"]) == ("65.71", ["65.71.01", "65.71.02", "65.71.03", "65.71.04"])
    assert gps_places(tarakan, ["65.71.03"]) == ("65.71", ["65.71.03"])   # a camat: their own kecamatan
    assert gps_places(tarakan, ["65.03"]) == ("65.71", [])                # outside their regions
    assert gps_places({"latitude": "x"}, ["65"]) == (None, [])
