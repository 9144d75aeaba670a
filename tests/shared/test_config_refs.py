"""shared/config_refs.py: the checks between config sections, called directly on Configs built
in code (each section valid by itself), and through parse() on a file."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from shared import config_refs
from shared.channels_config import ContactConfig
from shared.config import Config, ConfigError, parse
from shared.ids import ID_PATTERN
from shared.notify_config import NotifyConfig, Step
from shared.signing import fresh

EXAMPLE = Path(__file__).resolve().parents[2] / "deploy" / "config" / "pantau.example.yaml"
WEBHOOK_SECRET = fresh()
BOT = "123456789:AAExampleTokenNotRealAAAAAAAAAAAAAA"


def config(**sections: Any) -> Config:
    """A Config from plain sections, as the models check them one by one."""
    base: dict[str, Any] = {
        "contacts": [{"id": "budi", "name": "Budi"}, {"id": "sari", "name": "Sari"}],
        "channels": [{"id": "hook", "type": "webhook", "url": "http://127.0.0.1:1/", "secret": WEBHOOK_SECRET}],
    }
    return Config.model_validate(base | sections)


def policy(*steps: dict[str, Any], id: str = "p") -> dict[str, Any]:
    return {"id": id, "match": {"region": "65"}, "steps": list(steps)}


def example() -> Config:
    text = EXAMPLE.read_text(encoding="utf-8")
    env = {name: fresh() for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)}
    env["PANTAU_TELEGRAM_BOT_TOKEN"] = BOT
    return parse(text, EXAMPLE, env=env)


def test_a_config_whose_references_all_resolve_has_no_problem():
    assert config_refs.problems(example()) == []
    assert config_refs.problems(config(policies=[policy({"notify": ["contact:budi"], "channels": ["hook"]})],
                                       rotations=[{"region": "65.71", "members": ["budi", "sari"],
                                                   "start": "2024-11-04"}])) == []


CASES = [
    ({"policies": [policy({"notify": ["contact:budi"]}), policy({"notify": ["oncall:kabkota", "contact:x"]}, id="q")]},
     "policies[1].steps[0].notify[1]: unknown contact 'x'"),
    ({"policies": [policy({"notify": ["operators"]})]},
     "policies[0].steps[0].notify[0]: 'operators' needs notify.operator_contacts"),
    ({"policies": [policy({"notify": ["contact:budi"]}, {"notify": ["contact:sari"], "channels": ["hook", "sms"]})]},
     "policies[0].steps[1].channels[1]: unknown channel 'sms'"),
    ({"policies": [policy({"notify": ["contact:budi"]}), policy({"notify": ["contact:sari"]})]},
     "policies[1].id: 'p' is used twice (first at policies[0])"),
    ({"rotations": [{"region": "65.71", "members": ["budi", "andi"], "start": "2024-11-04"}]},
     "rotations[0].members[1]: unknown contact 'andi'"),
    ({"rotations": [{"region": "65.71", "members": ["budi"], "start": "2024-11-04",
                     "overrides": [{"contact": "andi", "start": "2024-11-27T00:00:00+08:00",
                                    "end": "2024-11-28T00:00:00+08:00"}]}]},
     "rotations[0].overrides[0].contact: unknown contact 'andi'"),
    ({"rotations": [{"region": "65.71", "members": ["budi"], "start": "2024-11-04"},
                    {"region": "65.71", "members": ["sari"], "start": "2024-11-04"}]},
     "rotations[1].region: '65.71' is used twice (first at rotations[0])"),
    ({"notify": {"operator_contacts": ["budi", "andi"]}},
     "notify.operator_contacts[1]: unknown contact 'andi'"),
    ({"notify": {"watchdog_policy": "nope"}},
     "notify.watchdog_policy: unknown policy 'nope'"),
    ({"sources": [{"id": "fkdm", "api_key": "k1", "regions": ["65"], "silent_after_minutes": 30}]},
     "sources[0].silent_after_minutes: nobody would hear of this source's silence; "
     "name notify.operator_contacts or a notify.watchdog_policy"),
    ({"sources": [{"id": "fkdm", "api_key": "k1", "regions": ["65"]}, {"id": "fkdm", "api_key": "k2", "regions": ["65"]}]},
     "sources[1].id: 'fkdm' is used twice (first at sources[0])"),
    ({"sources": [{"id": "a", "api_key": "same-key", "regions": ["65"]},
                  {"id": "b", "api_key": "same-key", "regions": ["65"]}]},
     "sources[1].api_key: the same as sources[0]'s; each needs its own"),
    ({"operators": [{"id": "o", "name": "A", "token": "t1"}, {"id": "o", "name": "B", "token": "t2"}]},
     "operators[1].id: 'o' is used twice (first at operators[0])"),
    ({"operators": [{"id": "a", "name": "A", "token": "same-token"}, {"id": "b", "name": "B", "token": "same-token"}]},
     "operators[1].token: the same as operators[0]'s; each needs its own"),
    ({"contacts": [{"id": "budi", "name": "Budi"}, {"id": "budi", "name": "Budi lagi"}]},
     "contacts[1].id: 'budi' is used twice (first at contacts[0])"),
    ({"channels": [{"id": "tg", "type": "telegram", "bot_token": BOT, "poll_replies": True},
                   {"id": "tg2", "type": "telegram", "bot_token": BOT, "poll_replies": True}]},
     "channels[1].poll_replies: channel 'tg' already polls this bot's replies "
     "(Telegram allows one getUpdates reader per bot)"),
    ({"channels": [{"id": "hook", "type": "slack", "webhook_url": "https://hooks.slack.com/services/T0/B0/x"},
                   {"id": "hook", "type": "webhook", "url": "http://127.0.0.1:1/", "secret": WEBHOOK_SECRET}]},
     "channels[1].id: 'hook' is used twice (first at channels[0])"),
]


@pytest.mark.parametrize("sections, problem", CASES, ids=[p.split(":")[0] for _, p in CASES])
def test_each_broken_reference_is_named_by_its_key_path(sections, problem):
    assert config_refs.problems(config(**sections)) == [problem]


def test_every_problem_is_listed_at_once():
    cfg = config(policies=[policy({"notify": ["contact:x", "contact:y"], "channels": ["z"]})],
                 notify={"operator_contacts": ["w"]})
    assert config_refs.problems(cfg) == [
        "policies[0].steps[0].notify[0]: unknown contact 'x'",
        "policies[0].steps[0].notify[1]: unknown contact 'y'",
        "policies[0].steps[0].channels[0]: unknown channel 'z'",
        "notify.operator_contacts[0]: unknown contact 'w'",
    ]


def test_a_shared_secret_is_named_by_position_never_by_value():
    cfg = config(sources=[{"id": "a", "api_key": "rahasia-bersama", "regions": ["65"]},
                          {"id": "b", "api_key": "rahasia-bersama", "regions": ["65"]}])
    (p,) = config_refs.problems(cfg)
    assert "rahasia" not in p and "sources[0]" in p


def test_every_list_section_with_ids_is_checked_for_an_id_used_twice():
    # A section added to Config (and to the example) without its check here fails this test.
    cfg = example()
    for name, field in Config.model_fields.items():
        items = getattr(cfg, name)
        if not (isinstance(items, list) and items and isinstance(items[0], BaseModel) and hasattr(items[0], "id")):
            continue
        doubled = cfg.model_copy(update={name: [*items, items[0]]})
        got = config_refs.problems(doubled)
        assert f"{name}[{len(items)}].id: {items[0].id!r} is used twice (first at {name}[0])" in got, (name, got)


def test_parse_refuses_a_file_with_a_broken_reference_naming_the_key():
    text = """
contacts:
  - {id: budi, name: Budi}
policies:
  - id: p
    steps: [{notify: ["contact:budi"]}]
  - id: q
    steps: [{notify: ["contact:budi", "contact:x"]}]
"""
    with pytest.raises(ConfigError) as e:
        parse(text, "bad.yaml", env={})
    assert e.value.problems == ["policies[1].steps[0].notify[1]: unknown contact 'x'"]
    assert "bad.yaml" in str(e.value)


def test_notify_config_of_a_config_built_in_code_checks_it_too():
    with pytest.raises(ConfigError, match=r"policies\[0\]\.steps\[0\]\.notify\[0\]: unknown contact 'x'"):
        NotifyConfig.of(config(policies=[policy({"notify": ["contact:x"]})]))


# --- one id pattern: whatever a contact may be called, a policy can page ----------------------

@settings(max_examples=300, deadline=None)
@given(name=st.from_regex(ID_PATTERN, fullmatch=True) | st.text(max_size=70))
def test_any_contact_id_the_config_accepts_is_pageable_as_a_contact_target(name: str):
    try:
        ContactConfig.model_validate({"id": name, "name": "X"})
    except ValidationError:
        return
    Step.model_validate({"notify": [f"contact:{name}"]})
    cfg = config(contacts=[{"id": name, "name": "X"}], policies=[policy({"notify": [f"contact:{name}"]})])
    assert config_refs.problems(cfg) == []
