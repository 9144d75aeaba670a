"""The configuration file: `${ENV}` secrets, errors that name the key at fault, and a
service that refuses a bad file at start with a message instead of a traceback."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from shared.config import ConfigError, load, parse, sha256_hex
from shared.signing import fresh

ROOT = Path(__file__).resolve().parents[2]
HASH = sha256_hex("kunci-rahasia")

GOOD = f"""
kafka:
  bootstrap_servers: "127.0.0.1:19092"
ingest:
  port: 8080
sources:
  - id: fkdm-kaltara
    api_key: "${{FKDM_KEY}}"
    regions: ["65"]
  - id: bawaslu-jabar
    api_key_sha256: "{HASH}"
    regions: ["32.73", "32.04.05"]
    rate_limit_per_minute: 120
operators:
  - id: budi
    name: Budi Santoso
    token: "${{BUDI_TOKEN}}"
"""
ENV = {"FKDM_KEY": "fkdm-secret", "BUDI_TOKEN": "budi-secret"}


def problems(text: str, env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse(text, "pantau.yaml", env=ENV if env is None else env)
    assert info.value.problems
    assert "pantau.yaml" in str(info.value)
    return info.value.problems


def source(**fields) -> str:
    body = {"id": "fkdm-kaltara", "api_key": "k", "regions": ["65"], **fields}
    return yaml.safe_dump({"sources": [{k: v for k, v in body.items() if v is not ...}]})


# --- what a good file gives ---------------------------------------------------------------

def test_good_file():
    cfg = parse(GOOD, env=ENV)
    fkdm, jabar = cfg.sources
    assert fkdm.api_key.get_secret_value() == "fkdm-secret"
    assert fkdm.key_hash() == sha256_hex("fkdm-secret")
    assert jabar.key_hash() == HASH and jabar.rate_limit_per_minute == 120
    assert jabar.regions == ["32.73", "32.04.05"]
    assert cfg.operators[0].token_hash() == sha256_hex("budi-secret")
    assert cfg.ingest.max_body_bytes == 64 * 1024


def test_empty_file_gives_the_defaults():
    cfg = parse("", env={})
    assert cfg.sources == [] and cfg.ingest.port == 8080


def test_shipped_example_is_complete_and_valid_with_its_cross_references():
    from shared.notify_config import NotifyConfig

    path = ROOT / "deploy" / "config" / "pantau.example.yaml"
    text = path.read_text()
    env = {name: fresh() for name in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", text)}
    env["PANTAU_TELEGRAM_BOT_TOKEN"] = "123456789:AAExampleTokenNotRealAAAAAAAAAAAAAA"
    cfg = parse(text, path, env=env)
    nc = NotifyConfig.of(cfg)  # contacts, channels, rotation members, policy targets resolve
    for section in ("sources", "operators", "contacts", "channels", "policies", "rotations"):
        assert getattr(cfg, section), f"the example has no {section}"
    assert nc.policies and nc.rotations and nc.settings.operator_contacts


# --- ${ENV} expansion ---------------------------------------------------------------------

def test_env_references_are_expanded_anywhere_in_a_string():
    cfg = parse('redis:\n  url: "redis://:${PW}@${HOST}:6379/0"\n', env={"PW": "s3cret", "HOST": "redis"})
    assert cfg.redis.url == "redis://:s3cret@redis:6379/0"


def test_only_braced_references_are_expanded():
    cfg = parse('redis:\n  url: "redis://:$PW@host/0"\n', env={"PW": "s3cret"})
    assert cfg.redis.url == "redis://:$PW@host/0"


def test_env_values_are_not_parsed_as_yaml():
    cfg = parse(source(api_key="${K}"), env={"K": "[1, 2]"})
    assert cfg.sources[0].api_key.get_secret_value() == "[1, 2]"


def test_missing_env_var_names_the_key_path_and_the_variable():
    assert problems(GOOD, env={"BUDI_TOKEN": "x"}) == [
        "sources[0].api_key: environment variable FKDM_KEY is not set"]


def test_every_missing_env_var_is_listed():
    got = problems(GOOD, env={})
    assert got == ["sources[0].api_key: environment variable FKDM_KEY is not set",
                   "operators[0].token: environment variable BUDI_TOKEN is not set"]


def test_load_reads_the_process_environment(tmp_path, monkeypatch):
    f = tmp_path / "pantau.yaml"
    f.write_text(GOOD)
    monkeypatch.setenv("FKDM_KEY", "from-env")
    monkeypatch.setenv("BUDI_TOKEN", "t")
    monkeypatch.setenv("PANTAU_CONFIG", str(f))
    assert load().sources[0].api_key.get_secret_value() == "from-env"


# --- errors name the key ------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("ingest:\n  prot: 8080\n", "ingest.prot: unknown key"),
    ("sourcez: []\n", "sourcez: unknown key"),
    (source(apikey="x", api_key=...), "sources[0].apikey: unknown key"),
    ("kafka:\n  partitions: four\n", "kafka.partitions"),
    ("ingest:\n  port: 70000\n", "ingest.port"),
    ("ingest:\n  dedup_ttl_days: 3\n", "ingest.dedup_ttl_days"),
    (source(id="FKDM Kaltara"), "sources[0].id"),
    (source(regions=[]), "sources[0].regions"),
    (source(rate_limit_per_minute=0), "sources[0].rate_limit_per_minute"),
])
def test_problem_names_the_key(text, expected):
    assert any(p.startswith(expected) for p in problems(text)), problems(text)


@pytest.mark.parametrize("prefix", ["99", "65.99", "65.71.02.9999", "6571", "x"])
def test_bad_region_prefix(prefix):
    got = problems(source(regions=["65.71", prefix]))
    assert len(got) == 1 and got[0].startswith("sources[0].regions")


def test_good_region_prefixes_of_any_level():
    cfg = parse(source(regions=["65", "32.73", "31.71.01", "65.71.02.1001"]), env={})
    assert cfg.sources[0].regions == ["65", "32.73", "31.71.01", "65.71.02.1001"]


@pytest.mark.parametrize("fields", [
    {"api_key": "k", "api_key_sha256": HASH},  # both
    {"api_key": ...},  # neither
])
def test_exactly_one_of_api_key_and_api_key_sha256(fields):
    assert problems(source(**fields)) == ["sources[0]: give exactly one of api_key or api_key_sha256"]


def test_api_key_sha256_must_be_a_hex_digest():
    assert problems(source(api_key=..., api_key_sha256="not-a-hash"))[0].startswith("sources[0].api_key_sha256")


def test_exactly_one_of_token_and_token_sha256():
    both = yaml.safe_dump({"operators": [{"id": "o", "name": "O", "token": "t", "token_sha256": HASH}]})
    neither = yaml.safe_dump({"operators": [{"id": "o", "name": "O"}]})
    assert problems(both) == problems(neither) == ["operators[0]: give exactly one of token or token_sha256"]


def test_duplicate_source_ids():
    text = yaml.safe_dump({"sources": [{"id": "a", "api_key": "k1", "regions": ["65"]},
                                       {"id": "a", "api_key": "k2", "regions": ["65"]}]})
    (p,) = problems(text)
    assert p == "sources[1].id: 'a' is used twice (first at sources[0])"


def test_duplicate_operator_ids():
    text = yaml.safe_dump({"operators": [{"id": "o", "name": "A", "token": "t1"},
                                         {"id": "o", "name": "B", "token": "t2"}]})
    (p,) = problems(text)
    assert p == "operators[1].id: 'o' is used twice (first at operators[0])"


def test_two_sources_cannot_share_a_key():
    text = yaml.safe_dump({"sources": [{"id": "a", "api_key": "same", "regions": ["65"]},
                                       {"id": "b", "api_key_sha256": sha256_hex("same"), "regions": ["65"]}]})
    (p,) = problems(text)
    assert "sources[1]" in p


def test_every_problem_is_listed():
    text = "ingest:\n  prot: 1\n  port: -1\nsourcez: []\n"
    assert len(problems(text)) == 3


def test_secrets_never_appear_in_errors():
    text = yaml.safe_dump({"sources": [{"id": "a", "api_key": "sangat-rahasia-123", "regions": ["99"],
                                        "api_key_sha256": "deadbeef"}],
                           "operators": [{"id": "o", "token": "token-rahasia-456", "name": 5}]})
    with pytest.raises(ConfigError) as info:
        parse(text, env={})
    assert "sangat-rahasia-123" not in str(info.value) and "token-rahasia-456" not in str(info.value)


# --- files that are not a config ----------------------------------------------------------

@pytest.mark.parametrize(("text", "line"), [
    ("sources:\n  - id: a\n   api_key: x\n", 3),
    ("kafka:\n  partitions: [1, 2\ningest: {}\n", 3),
    ("ingest:\n\tport: 1\n", 2),
])
def test_invalid_yaml_names_the_line(text, line):
    (p,) = problems(text)
    assert p.startswith("(file): not valid YAML") and f"line {line}" in p


@pytest.mark.parametrize("text", ["- a\n- b\n", "just text", "42", "[]"])
def test_top_level_must_be_a_mapping(text):
    assert problems(text) == ["(top level): must be a mapping of sections (sources, channels, ...)"]


@pytest.mark.parametrize("text", [
    "ingest: 2024-13-45\n",  # PyYAML raises ValueError building this date
    "contacts: &x [*x]\n",  # an alias inside itself
    "kafka: " + "[" * 2000 + "]" * 2000 + "\n",
    "kafka: " + "{a: " * 300 + "1" + "}" * 300 + "\n",
])
def test_hostile_yaml_is_a_config_error(text):
    problems(text)


def test_missing_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "nope.yaml")


def test_file_that_is_not_utf8(tmp_path):
    f = tmp_path / "pantau.yaml"
    f.write_bytes(b"sources:\n  - id: \xff\xfe\n")
    with pytest.raises(ConfigError, match="UTF-8"):
        load(f)


# --- a service refuses a bad file at start ------------------------------------------------

def run_service(tmp_path: Path, content: bytes, which: str = "gateway") -> subprocess.CompletedProcess:
    f = tmp_path / "pantau.yaml"
    f.write_bytes(content)
    env = {k: v for k, v in os.environ.items() if k not in ("PANTAU_CONFIG",)}
    env["PANTAU_CONFIG"] = str(f)
    return subprocess.run([sys.executable, "-m", "services.ingest", which], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize(("which", "content", "named"), [
    ("gateway", b"ingest:\n  prot: 8080\n", "ingest.prot: unknown key"),
    ("gateway", source(api_key="${PANTAU_TEST_UNSET_VAR}").encode(),
     "sources[0].api_key: environment variable PANTAU_TEST_UNSET_VAR is not set"),
    ("gateway", b"sources:\n  - id: a\n   api_key: x\n", "line 3"),
    ("gateway", b"ingest: 2024-13-45\n", "not valid YAML"),
    ("gateway", b"\xff\xfe\x00", "UTF-8"),
    ("validator", source(regions=["99"]).encode(), "sources[0].regions"),
], ids=["unknown-key", "missing-env", "yaml-syntax", "yaml-bad-date", "not-utf8", "validator-bad-region"])
def test_service_with_a_bad_config_exits_with_the_key_and_no_traceback(tmp_path, which, content, named):
    done = run_service(tmp_path, content, which)
    out = done.stdout + done.stderr
    assert done.returncode != 0
    assert named in out
    assert "Traceback" not in out
    assert str(tmp_path / "pantau.yaml") in out


# --- property: the loader answers with ConfigError or a Config, nothing else --------------

KEYS = ["kafka", "redis", "ingest", "sources", "operators", "id", "api_key", "api_key_sha256", "regions",
        "rate_limit_per_minute", "port", "bootstrap_servers", "url", "token", "name", "partitions",
        "max_body_bytes", "dedup_ttl_days", "metrics_port", "send_timeout_s", "scoring", "notify"]
SCALARS = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20)
           | st.sampled_from(["65", "65.71", "99", "${HOME}", "${NOPE_X}", HASH, "2024-01-01", "1e3", "0x1F"]))
TREE = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=8),
                                                                inner, max_size=4),
    max_leaves=15,
)


def _parse_or_config_error(text: str) -> None:
    try:
        parse(text, "fuzz.yaml", env={"HOME": "/root"})
    except ConfigError as e:
        assert e.problems and all(isinstance(p, str) and p for p in e.problems)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(text=st.text(max_size=300) | st.lists(
    st.sampled_from(["sources:", "  - id: a", "    regions: [65]", "ingest:", "  port: x", ": ", "- ", "&a ", "*a",
                     "!!binary", "!!python/object:os.system", "{", "}", "[", "]", "? ", "|", ">", "'", '"', "\t",
                     "---", "...", "2024-99-99", "%YAML 1.1", "<<: *a", "!!timestamp x", "!!int x", "!!float x"]),
    max_size=12).map("\n".join))
def test_arbitrary_text_gives_a_config_or_a_config_error(text):
    _parse_or_config_error(text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tree=st.dictionaries(st.sampled_from(KEYS), TREE, max_size=5))
def test_arbitrary_yaml_structure_gives_a_config_or_a_config_error(tree):
    _parse_or_config_error(yaml.safe_dump(tree, allow_unicode=True))


@settings(max_examples=100, deadline=None)
@given(content=st.binary(max_size=200))
def test_arbitrary_file_bytes_give_a_config_or_a_config_error(content):
    with tempfile.NamedTemporaryFile(suffix=".yaml") as f:
        f.write(content)
        f.flush()
        try:
            load(f.name)
        except ConfigError:
            pass


# --- ids -------------------------------------------------------------------------------------

def test_a_contact_id_with_a_colon_is_refused_by_its_key():
    # `contact:<id>` is how a policy pages a contact: an id with ':' could never be paged.
    got = problems(GOOD + "contacts:\n  - {id: 'kab:tarakan', name: Kab Tarakan}\n")
    assert len(got) == 1 and got[0].startswith("contacts[0].id"), got
    assert "':'" in got[0], got


def test_contact_ids_and_contact_targets_accept_the_same_ids():
    cfg = parse(GOOD + """
contacts:
  - {id: kab.tarakan_1, name: Kab Tarakan}
policies:
  - id: p
    match: {region: "65"}
    steps: [{notify: ["contact:kab.tarakan_1"], wait_minutes: 5}]
""", env=ENV)
    assert cfg.contacts[0].id == "kab.tarakan_1"
    assert cfg.policies[0].steps[0].notify == ["contact:kab.tarakan_1"]
