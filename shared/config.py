"""The one configuration file (YAML, path in PANTAU_CONFIG): its schema, `${ENV}` secret
expansion, and start-up errors that name the key at fault.

Every service loads it through `load()`; nothing else reads the environment for settings.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator

from shared import config_refs
from shared.ids import SOURCE_ID_MAX, SOURCE_ID_PATTERN, Id
from shared.regions import known_region
from shared.strict import Strict as _Strict
from shared.channels_config import CHANNEL_TYPES, ChannelConfig, ContactConfig
from shared.notify_config import NotifySettings, Policy, Rotation
from shared.reporting_config import Reporter, ReportingSettings
from shared.scoring_config import ScoringSettings

ENV_VAR = "PANTAU_CONFIG"
# Set by the embedded stack (cli/stack.py): a 0600 file with the password of the Redis it runs,
# used when `redis.url` has none, so the password is never in a config file or a command line.
PASSWORD_FILE_VAR = "PANTAU_REDIS_PASSWORD_FILE"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


class ConfigError(Exception):
    """A configuration problem, worded for the person who edits the file."""

    def __init__(self, problems: list[str], path: str | Path | None = None):
        self.problems = problems
        self.path = str(path) if path else None
        where = f" in {self.path}" if self.path else ""
        super().__init__(f"invalid configuration{where}:\n" + "\n".join(f"  - {p}" for p in problems))


RegionPrefix = Annotated[str, Field(min_length=2)]


class KafkaSettings(_Strict):
    """Where the broker is, and how the pantau.* topics are made."""

    bootstrap_servers: str = "127.0.0.1:19092"
    partitions: int = Field(4, ge=1, le=256)
    replication_factor: int = Field(1, ge=1, le=7)


class RedisSettings(_Strict):
    """Where Redis is."""

    url: str = "redis://127.0.0.1:16379/0"


class IngestSettings(_Strict):
    """The ingest gateway's and validator's own settings."""

    host: str = "127.0.0.1"
    port: int = Field(8080, ge=1, le=65535)
    dedup_ttl_days: int = Field(8, ge=7, le=365)
    default_rate_limit_per_minute: int = Field(6000, ge=1)
    max_body_bytes: int = Field(64 * 1024, ge=1024)
    max_batch_body_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    send_timeout_s: float = Field(5.0, gt=0, le=120)
    validator_group: str = "pantau-validator"
    metrics_port: int = Field(9101, ge=1, le=65535)


def _exactly_one(plain: SecretStr | None, hashed: str | None, name: str) -> None:
    # A secret is given in the file (or its ${ENV}) or as its SHA-256, never both or neither.
    if (plain is None) == (hashed is None):
        raise ValueError(f"give exactly one of {name} or {name}_sha256")


def _hash_of(plain: SecretStr | None, hashed: str | None) -> str:
    return hashed or sha256_hex(plain.get_secret_value())  # type: ignore[union-attr]


class Source(_Strict):
    """A publishing system: its key fixes its `source` id and the regions it may report on."""

    id: Annotated[str, Field(min_length=1, max_length=SOURCE_ID_MAX, pattern=SOURCE_ID_PATTERN)]
    api_key: SecretStr | None = None
    api_key_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None
    regions: list[RegionPrefix] = Field(min_length=1)
    rate_limit_per_minute: int | None = Field(None, ge=1)
    silent_after_minutes: int | None = Field(None, ge=1)

    @field_validator("regions")
    @classmethod
    def _regions_exist(cls, v: list[str]) -> list[str]:
        return [known_region(c) for c in v]

    @model_validator(mode="after")
    def _one_key(self) -> "Source":
        _exactly_one(self.api_key, self.api_key_sha256, "api_key")
        return self

    def key_hash(self) -> str:
        return _hash_of(self.api_key, self.api_key_sha256)


class Operator(_Strict):
    """A person who uses the notify API and console, with a bearer token."""

    id: Id
    name: str
    token: SecretStr | None = None
    token_sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")] | None = None

    @model_validator(mode="after")
    def _one_token(self) -> "Operator":
        _exactly_one(self.token, self.token_sha256, "token")
        return self

    def token_hash(self) -> str:
        return _hash_of(self.token, self.token_sha256)


class Config(_Strict):
    """The whole configuration file, each section checked by its model (parse() then checks the
    references between sections: shared/config_refs.py)."""

    kafka: KafkaSettings = KafkaSettings()
    redis: RedisSettings = RedisSettings()
    ingest: IngestSettings = IngestSettings()
    sources: list[Source] = Field(default_factory=list)
    operators: list[Operator] = Field(default_factory=list)
    contacts: list[ContactConfig] = Field(default_factory=list)
    channels: list[ChannelConfig] = Field(default_factory=list)
    policies: list[Policy] = Field(default_factory=list)
    rotations: list[Rotation] = Field(default_factory=list)
    scoring: ScoringSettings = ScoringSettings()
    notify: NotifySettings = NotifySettings()
    reporters: list[Reporter] = Field(default_factory=list)
    reporting: ReportingSettings = ReportingSettings()


def without_password(url: str) -> str:
    """`url` with any password in it replaced by `***`, for printing and logging."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


def sha256_hex(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _expand(node: Any, path: str, env: dict[str, str], problems: list[str]) -> Any:
    """Replace `${VAR}` in every string, recording each missing variable with its key path."""
    if isinstance(node, dict):
        return {k: _expand(v, f"{path}.{k}" if path else str(k), env, problems) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, f"{path}[{i}]", env, problems) for i, v in enumerate(node)]
    if isinstance(node, str):
        def sub(m: re.Match[str]) -> str:
            if m.group(1) not in env:
                problems.append(f"{path}: environment variable {m.group(1)} is not set")
                return ""
            return env[m.group(1)]

        return _ENV_REF.sub(sub, node)
    return node


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    prev: Any = None
    for part in loc:
        # A discriminated union (channels) puts its tag after the index: channels[0].webhook.url.
        tag_after_index, prev = isinstance(prev, int) and part in CHANNEL_TYPES, part
        if tag_after_index:
            continue
        if isinstance(part, int):
            out += f"[{part}]"
        elif str(part).startswith(("function-", "constrained-")):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def parse(text: str, path: str | Path | None = None, env: dict[str, str] | None = None) -> Config:
    """Parse YAML text into a Config, or raise ConfigError listing every problem by key."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError([f"(file): not valid YAML{where}: {getattr(e, 'problem', e)}"], path) from None
    except RecursionError:
        raise ConfigError(["(file): nested too deeply"], path) from None
    except Exception as e:
        # PyYAML's constructors let their own errors through: ValueError for `at: 2024-13-45`,
        # AttributeError for `!!timestamp x`, TypeError and others for odd tags.
        raise ConfigError([f"(file): not valid YAML: {e}"], path) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["(top level): must be a mapping of sections (sources, channels, ...)"], path)
    problems: list[str] = []
    try:
        data = _expand(data, "", dict(os.environ) if env is None else env, problems)
        if problems:
            raise ConfigError(problems, path)
        config = Config.model_validate(data)
    except RecursionError:
        # Deep nesting, or an alias that contains itself (`a: &x [*x]`).
        raise ConfigError(["(file): nested too deeply, or an alias refers to itself"], path) from None
    except ValidationError as exc:
        msgs = []
        for e in exc.errors(include_url=False, include_input=False):
            msg = e["msg"].removeprefix("Value error, ")
            if e["type"] == "extra_forbidden":
                msg = "unknown key"
            msgs.append(f"{_loc(e['loc'])}: {msg}")
        raise ConfigError(msgs, path) from None
    # Each section is valid by itself; now what the sections say of each other.
    if problems := config_refs.problems(config):
        raise ConfigError(problems, path)
    return config


def load_redis_password(settings: RedisSettings, password_file: str | Path | None) -> RedisSettings:
    """`settings` with the password from `password_file` in its URL, unless it has one already."""
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(settings.url)
    if not password_file or parts.password is not None:
        return settings
    try:
        password = Path(password_file).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise ConfigError([f"redis.url: cannot read the password file {password_file}: {e.strerror}"]) from None
    netloc = f"{quote(parts.username or '')}:{quote(password, safe='')}@{parts.hostname}" + \
        (f":{parts.port}" if parts.port else "")
    return settings.model_copy(update={"url": urlunsplit(parts._replace(netloc=netloc))})


def load(path: str | Path | None = None) -> Config:
    """Load the config from `path`, else from $PANTAU_CONFIG, else the built-in defaults."""
    cfg = _load(path)
    password_file = os.environ.get(PASSWORD_FILE_VAR)
    return cfg.model_copy(update={"redis": load_redis_password(cfg.redis, password_file)}) if password_file else cfg


def load_for(service: str) -> Config:
    """The config a service starts with, checked whole; a bad one ends the process with status 2
    and every problem on stderr, each naming its key, before anything has started."""
    import sys

    try:
        return load()
    except ConfigError as e:
        print(f"pantau {service}: {e}", file=sys.stderr)
        raise SystemExit(2) from None


def _load(path: str | Path | None = None) -> Config:
    path = path or os.environ.get(ENV_VAR)
    if not path:
        return Config()
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError([f"(file): cannot read {p}: {e.strerror}"], p) from None
    except UnicodeDecodeError as e:
        raise ConfigError([f"(file): not UTF-8 text (byte {e.start})"], p) from None
    return parse(text, p)
