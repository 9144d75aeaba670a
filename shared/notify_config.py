"""The notify sections of the config: escalation `policies`, on-call `rotations` and the
notify service's own `notify` settings.

Shapes (YAML):

    policies:
      - id: kaltara-default
        match: {region: "65", categories: [election_dispute], min_level: waspada}
        steps:
          - {notify: ["oncall:kabkota"], wait_minutes: 10, repeat: 1}
          - {notify: ["oncall:province", "operators"], channels: [telegram], wait_minutes: 15}
        level_steps: {siaga: 1, awas: 1}    # at this level, fire that step at once (with earlier steps not yet paged)
        repeat: 2                           # run the whole list again while nobody acknowledges
    rotations:
      - region: "65.71"
        members: [budi, sari]
        handover: weekly                    # or daily
        handover_at: "08:00"                # the region's local time (WIB/WITA/WIT)
        start: 2024-11-04
        overrides: [{contact: andi, start: 2024-11-27T00:00:00+08:00, end: 2024-11-28T00:00:00+08:00}]
    notify:
      public_url: "https://pantau.example.go.id"
      link_secret: "${PANTAU_LINK_SECRET}"
      inhibit: {province_over_kabupaten: true, min_kabkota: 2, recheck_s: 60}   # a province incident holds back kabupaten pages

Targets are `contact:<id>`, `oncall:kabkota` (the on-call coordinator of the incident's
kabupaten/kota, or of its province when the kabupaten/kota has no rotation),
`oncall:province` and `operators` (the contacts in `notify.operator_contacts`).

`NotifyConfig.of(config)` gives the notify service one checked view of all of it, and raises
ConfigError naming the key at fault; the references between sections (contacts, channels,
rotation members) are checked in shared/config_refs.py.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime, time
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, StrictBool, field_validator, model_validator

from shared.channels_config import ContactConfig, DeliverySettings
from shared.categories import Category
from shared.ids import TARGET_PATTERN, Id
from shared.levels import AlertLevel
from shared.regions import known_region as _region, registry
from shared.strict import Strict as _Strict
from shared.signing import problem as signing_secret_problem


Target = Annotated[str, Field(pattern=TARGET_PATTERN)]


class PolicyMatch(_Strict):
    """Which incidents a policy takes: a region prefix, categories, a minimum level."""

    region: str | None = None
    categories: list[Category] | None = Field(None, min_length=1)
    min_level: AlertLevel = "waspada"

    @field_validator("region")
    @classmethod
    def _known(cls, v: str | None) -> str | None:
        return None if v is None else _region(v)


class Step(_Strict):
    """One escalation step: who hears of the incident, on which channels, and how long to
    wait for an acknowledgement before the next step (or a reminder, `repeat` times)."""

    notify: list[Target] = Field(min_length=1)
    channels: list[str] | None = Field(None, min_length=1)
    wait_minutes: float = Field(10.0, gt=0, le=24 * 60)
    repeat: int = Field(0, ge=0, le=9)

    @property
    def wait_s(self) -> float:
        return self.wait_minutes * 60.0


class LevelSteps(_Strict):
    """Step index that a rise to this level fires at once, even after an acknowledgement."""

    siaga: int | None = Field(None, ge=0)
    awas: int | None = Field(None, ge=0)


class Policy(_Strict):
    """Routing (match) and the ordered escalation steps for the incidents it takes."""

    id: Id
    match: PolicyMatch = PolicyMatch()
    steps: list[Step] = Field(min_length=1)
    level_steps: LevelSteps = LevelSteps()
    repeat: int = Field(0, ge=0, le=9)

    @model_validator(mode="after")
    def _steps_exist(self) -> "Policy":
        for level in ("siaga", "awas"):
            i = getattr(self.level_steps, level)
            if i is not None and i >= len(self.steps):
                raise ValueError(f"level_steps.{level} is step {i}, but the policy has {len(self.steps)} steps "
                                 f"(numbered from 0)")
        return self


class Override(_Strict):
    """Someone else on call for a while; a time without offset is the region's local time."""

    contact: Id
    start: datetime
    end: datetime

    @model_validator(mode="after")
    def _ordered(self) -> "Override":
        if _naive(self.start) != _naive(self.end):
            raise ValueError("give start and end both with or both without a UTC offset")
        if self.end <= self.start:
            raise ValueError("end must be after start")
        return self


def _naive(dt: datetime) -> bool:
    return dt.tzinfo is None or dt.utcoffset() is None


class Rotation(_Strict):
    """Who is on call for one region (a kabupaten/kota or a province), in turns."""

    region: str
    members: list[Id] = Field(min_length=1)
    handover: Literal["weekly", "daily"] = "weekly"
    handover_at: Annotated[str, Field(pattern=r"^([01]\d|2[0-3]):[0-5]\d$")] = "08:00"
    start: date
    overrides: list[Override] = Field(default_factory=list)

    @field_validator("region")
    @classmethod
    def _known(cls, v: str) -> str:
        v = _region(v)
        if registry().level(v) > 2:
            raise ValueError("a rotation covers a province or a kabupaten/kota")
        return v

    @property
    def handover_time(self) -> time:
        h, m = self.handover_at.split(":")
        return time(int(h), int(m))


class InhibitSettings(_Strict):
    """Inhibition (services.notify.inhibit): while a province incident of a category is open
    and unacknowledged, the pages of its kabupaten/kota incidents of that category wait, unless
    they are at a higher level than the province incident."""

    province_over_kabupaten: StrictBool = True
    # Hold back only while the situation is wider than one kabupaten/kota: this many of its
    # kabupaten/kota incidents of the category open in the province (1: whenever the province
    # incident is open, even when it only echoes a single kabupaten/kota).
    min_kabkota: int = Field(2, ge=1, le=100)
    # Keep holding back after the province incident is acknowledged. Off by default: one ack
    # at the province would otherwise silence every kabupaten/kota page of the category.
    while_acknowledged: StrictBool = False
    # A held incident looks again this often, so it resumes even if the wake-up sent when the
    # province incident resolved was lost (a notify process killed at that moment).
    recheck_s: float = Field(60.0, gt=0, le=3600)


class NotifySettings(_Strict):
    """The notify service: where it listens, how ack links are made, and its loops."""

    host: str = "127.0.0.1"
    port: int = Field(8082, ge=1, le=65535)
    # /metrics is served here only, never on `port` (which faces the internet for the ack pages).
    metrics_port: int = Field(9102, ge=1, le=65535)
    public_url: str = "http://127.0.0.1:8082"
    # Without a secret in the config, one is generated once and kept in Redis (links then
    # survive restarts, but rotating it means deleting that key).
    link_secret: SecretStr | None = None
    link_ttl_minutes: int = Field(24 * 60, ge=1, le=30 * 24 * 60)
    # Requests to /ack/... per client address per minute (per notify process). Behind a reverse
    # proxy every request comes from the proxy's address: limit there too, or raise this.
    ack_rate_limit_per_minute: int = Field(30, ge=1, le=100_000)
    # Consecutive normal buckets before an incident resolves itself; default: scoring's
    # `auto_resolve_buckets` if it has one, else 2.
    auto_resolve_buckets: int | None = Field(None, ge=1, le=1000)
    silent_source_check_s: float = Field(30.0, gt=0, le=3600)
    language: Literal["id", "en"] = "id"
    operator_contacts: list[Id] = Field(default_factory=list)
    # Source-silence incidents: the policy they follow (an id from `policies`), else one step
    # to `operators` repeated every `watchdog_reminder_minutes`.
    watchdog_policy: str | None = None
    watchdog_reminder_minutes: float = Field(60.0, gt=0, le=24 * 60)
    consumer_group: str = "pantau-notify"
    # The watchdog reads reports.v1 without a consumer group (its positions are in Redis):
    # this names it only in `pantau_consumer_lag_messages`.
    watchdog_group: str = "pantau-notify-watchdog"
    timer_lease_s: float = Field(30.0, ge=1, le=3600)
    timer_poll_s: float = Field(0.5, gt=0, le=10)
    incident_retention_days: int = Field(90, ge=1, le=3650)
    delivery: DeliverySettings = DeliverySettings()
    inhibit: InhibitSettings = InhibitSettings()

    @model_validator(mode="after")
    def _ports_differ(self) -> "NotifySettings":
        if self.metrics_port == self.port:
            raise ValueError("metrics_port must differ from port: metrics are never served on the public port")
        return self

    @field_validator("link_secret")
    @classmethod
    def _signing_secret(cls, v: SecretStr | None) -> SecretStr | None:
        why = None if v is None else signing_secret_problem(v.get_secret_value())
        if why:
            raise ValueError(why)
        return v

    @field_validator("public_url")
    @classmethod
    def _url(cls, v: str) -> str:
        if not re.match(r"^https?://[^\s/]+", v):
            raise ValueError("must be an http(s) URL such as https://pantau.example.go.id")
        return v.rstrip("/")


@dataclass(frozen=True)
class NotifyConfig:
    """Everything the notify service reads from the config, checked together."""

    settings: NotifySettings
    policies: tuple[Policy, ...]
    rotations: tuple[Rotation, ...]
    contacts: tuple[ContactConfig, ...] = ()
    channels: tuple[Any, ...] = ()  # typed channel configs (shared.channels_config)

    @classmethod
    def of(cls, config: Any) -> "NotifyConfig":
        """The notify view of a shared.config.Config. parse() has checked its references already;
        one built in code is checked here, raising ConfigError naming each bad key."""
        from shared import config_refs
        from shared.config import ConfigError

        if problems := config_refs.problems(config):
            raise ConfigError(problems)
        return cls(config.notify, tuple(config.policies), tuple(config.rotations), tuple(config.contacts),
                   tuple(config.channels))

    def auto_resolve_buckets(self, scoring: Any = None) -> int:
        if self.settings.auto_resolve_buckets:
            return self.settings.auto_resolve_buckets
        extra = getattr(scoring, "auto_resolve_buckets", None)
        if extra is None and scoring is not None:
            extra = (getattr(scoring, "model_extra", None) or {}).get("auto_resolve_buckets")
        return int(extra) if isinstance(extra, int) and extra >= 1 else 2

    def policy(self, policy_id: str | None) -> Policy | None:
        for p in self.policies:
            if p.id == policy_id:
                return p
        return None

    def rotation(self, region: str) -> Rotation | None:
        for r in self.rotations:
            if r.region == region:
                return r
        return None


__all__ = [
    "AlertLevel", "Target", "PolicyMatch", "Step", "LevelSteps", "Policy",
    "Override", "Rotation", "InhibitSettings", "NotifySettings", "NotifyConfig",
]
