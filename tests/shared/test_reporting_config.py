"""`reporters` and `reporting` are checked at start, each problem named by its key."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from shared.config import ConfigError, parse

SOURCES = """sources:
  - id: fkdm-kaltara
    api_key: k1
    regions: ["65"]
"""


def problems(text: str) -> str:
    with pytest.raises(ConfigError) as e:
        parse(SOURCES + text, env={})
    return str(e.value)


def reporter(**kw: str) -> str:
    fields = {"id": "rp-1", "name": "Andi", "telegram_user_id": "42", "regions": '["65.71"]', "source": "fkdm-kaltara"}
    fields.update(kw)
    return "reporters:\n  - " + "\n    ".join(f"{k}: {v}" for k, v in fields.items() if v != "-") + "\n"


def test_a_good_reporter_loads():
    cfg = parse(SOURCES + reporter(phone='"+6281234567890"'), env={})
    assert cfg.reporters[0].regions == ["65.71"] and cfg.reporting.rate_limit_per_hour == 10


@pytest.mark.parametrize("text, expected", [
    (reporter(source="polda"), "reporters[0].source: 'polda' is not one of the configured sources"),
    (reporter(regions='["32.73"]'), "reporters[0].regions: '32.73' is outside source 'fkdm-kaltara''s regions"),
    (reporter(regions='["65.99"]'), "reporters[0].regions: unknown region code '65.99'"),
    (reporter(telegram_user_id="-"), "reporters[0]: give telegram_user_id or phone (or both)"),
    (reporter(phone='"0812"'), "reporters[0].phone: not a valid Indonesian phone number"),
    (reporter(name="-"), "reporters[0].name: Field required"),
    (reporter() + "  - id: rp-2\n    name: B\n    telegram_user_id: 42\n    regions: [\"65\"]\n    source: fkdm-kaltara\n",
     "reporters[1].telegram_user_id is used twice"),
    ("reporting:\n  sms:\n    secret: short\n", "reporting.sms.secret: must be at least 32 characters"),
    ("reporting:\n  telegram:\n    bot_token: nope\n", "reporting.telegram.bot_token: not a Telegram bot token"),
    ("reporting:\n  rate_limit_per_hour: 0\n", "reporting.rate_limit_per_hour: Input should be greater than or equal to 1"),
])
def test_bad_reporters_are_named(text, expected):
    said = problems(text)
    assert expected in said, said


def test_the_gateway_refuses_to_start_naming_the_key(tmp_path):
    cfg = tmp_path / "pantau.yaml"
    cfg.write_text(SOURCES + reporter(source="polda"))
    done = subprocess.run([sys.executable, "-m", "services.ingest", "gateway"], capture_output=True, text=True,
                          timeout=60, env={**os.environ, "PANTAU_CONFIG": str(cfg)})
    assert done.returncode == 2
    assert "reporters[0].source: 'polda' is not one of the configured sources" in done.stderr
    assert "Traceback" not in done.stderr
