"""Signing secrets (ack links, webhook pages): empty, short, placeholder and patterned values stop
the config at load, naming the key; what `pantau secret` prints is accepted."""

from __future__ import annotations

import subprocess
import sys

import pytest

from shared.config import ConfigError, parse
from shared.signing import PLACEHOLDERS, fresh

GOOD = fresh()
HOOK = 'channels:\n  - {{id: hook, type: webhook, url: "https://siaga.kaltaraprov.go.id/p", secret: "{}"}}\n'
LINK = 'notify:\n  link_secret: "{}"\n'


@pytest.mark.parametrize("template,key", [(LINK, "notify.link_secret"), (HOOK, "channels[0].secret")])
@pytest.mark.parametrize("value,why", [
    ("", "is empty"),
    ("short-but-random-Q7f3Lm", "at least 32 bytes"),
    ("change-me-link-secret-at-least-32-characters", "placeholder"),
    ("demo-webhook-secret-not-for-production-xxxx", "placeholder"),
    ("CHANGEME-0123456789-0123456789-0123456789", "placeholder"),
    ("x" * 40, "repeated pattern"),
    ("01230123012301230123012301230123", "repeated pattern"),
])
def test_weak_signing_secrets_are_refused_naming_the_key(template, key, value, why):
    with pytest.raises(ConfigError) as e:
        parse(template.format(value), "pantau.yaml", env={})
    (problem,) = [p for p in e.value.problems if p.startswith(key)]
    assert why in problem
    if value:
        assert value not in str(e.value)


def test_an_env_var_set_but_empty_is_refused():
    with pytest.raises(ConfigError) as e:
        parse('notify:\n  link_secret: "${PANTAU_LINK_SECRET}"\n', env={"PANTAU_LINK_SECRET": ""})
    assert any(p.startswith("notify.link_secret: is empty") for p in e.value.problems)


def test_every_shipped_placeholder_is_refused():
    for value in PLACEHOLDERS:
        with pytest.raises(ConfigError):
            parse(LINK.format(value), env={})


@pytest.mark.parametrize("template", [LINK, HOOK])
def test_a_fresh_secret_is_accepted(template):
    parse(template.format(GOOD), env={})


def test_pantau_secret_prints_a_fresh_accepted_secret_each_time():
    runs = [subprocess.run([sys.executable, "-m", "cli.main", "secret"], capture_output=True, text=True, timeout=60)
            for _ in range(2)]
    values = [r.stdout.strip() for r in runs]
    assert all(r.returncode == 0 for r in runs) and values[0] != values[1]
    for v in values:
        assert len(v.encode()) >= 32
        parse(LINK.format(v), env={})


def test_the_demo_config_ships_no_signing_secret_and_up_fills_fresh_ones(monkeypatch):
    from cli.main import DEMO_CONFIG, DEMO_SECRET_VARS, _fresh_demo_secrets
    from shared.config import load

    text = DEMO_CONFIG.read_text()
    for var in DEMO_SECRET_VARS:
        assert "${" + var + "}" in text
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(ConfigError):
        load(DEMO_CONFIG)
    _fresh_demo_secrets()
    first = load(DEMO_CONFIG).notify.link_secret.get_secret_value()
    _fresh_demo_secrets()
    assert load(DEMO_CONFIG).notify.link_secret.get_secret_value() != first
