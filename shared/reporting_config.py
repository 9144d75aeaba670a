"""Config of field reports from people: `reporters` (who may report, as which source, on which
regions) and `reporting` (the Telegram bot and SMS webhook they report through, rate limit,
cancel window). Checked at start against `sources`, naming the key at fault."""

from __future__ import annotations

from typing import Annotated, Any, Iterator

from pydantic import Field, SecretStr, field_validator

from shared.channels_config import TelegramChannelConfig, _http_url, normalise_phone
from shared.regions import in_scope, known_region
from shared.strict import Strict

class Reporter(Strict):
    """An enrolled field reporter (FKDM member, camat, kepala desa). `id` is the pseudonym
    reports and logs may carry; name, Telegram user id and phone never leave ingest."""

    id: Annotated[str, Field(pattern=r"^[a-z0-9-]{1,40}$")]
    name: str = Field(min_length=1, max_length=120)
    telegram_user_id: int | None = Field(None, ge=1)
    phone: str | None = None
    regions: list[Annotated[str, Field(min_length=2)]] = Field(min_length=1)
    source: str

    @field_validator("regions")
    @classmethod
    def _regions_exist(cls, v: list[str]) -> list[str]:
        return [known_region(c) for c in v]

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        return None if v is None else normalise_phone(v)


class TelegramIntake(Strict):
    """The reporters' bot: long-polled with getUpdates by one ingest gateway at a time. Use a
    bot of its own: Telegram gives a bot's updates to one reader only (not notify's bot when
    it polls replies)."""

    bot_token: SecretStr
    base_url: str = "https://api.telegram.org"
    poll_timeout_s: int = Field(25, ge=1, le=50)
    timeout_s: float = Field(10.0, gt=0, le=60)

    @field_validator("bot_token")
    @classmethod
    def _token(cls, v: SecretStr) -> SecretStr:
        return TelegramChannelConfig._token(v)  # one rule for every bot token

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _http_url(v).rstrip("/")


class SmsIntake(Strict):
    """The inbound SMS webhook (`POST /v1/inbound/sms?secret=...`): the gateway posts the
    sender and the text, as JSON or a form, under these field names."""

    secret: SecretStr
    from_field: str = "from"
    text_field: str = "text"

    @field_validator("secret")
    @classmethod
    def _secret(cls, v: SecretStr) -> SecretStr:
        if len(v.get_secret_value()) < 32:
            raise ValueError("must be at least 32 characters (it is all that stands between the internet and "
                             "the reports)")
        return v


class ReportingSettings(Strict):
    """How people report: channels, per-reporter rate limit, the window to cancel one's own report."""

    telegram: TelegramIntake | None = None
    sms: SmsIntake | None = None
    rate_limit_per_hour: int = Field(10, ge=1, le=1000)
    cancel_minutes: int = Field(10, ge=1, le=1440)
    conversation_minutes: int = Field(30, ge=5, le=1440)


def reporter_problems(reporters: list[Reporter], sources: list[Any]) -> Iterator[str]:
    """Every reporter publishes as a configured source, within its regions; Telegram ids and
    phones are each one person's. Each problem names its key."""
    by_id = {s.id: s for s in sources}
    seen: dict[str, set[Any]] = {"telegram_user_id": set(), "phone": set()}  # ids: config_refs
    for i, r in enumerate(reporters):
        where = f"reporters[{i}]"
        source = by_id.get(r.source)
        if source is None:
            yield f"{where}.source: {r.source!r} is not one of the configured sources"
        for code in r.regions if source else ():
            if not in_scope(code, source.regions):
                yield (f"{where}.regions: {code!r} is outside source {r.source!r}'s regions "
                       f"({', '.join(source.regions)})")
        if r.telegram_user_id is None and r.phone is None:
            yield f"{where}: give telegram_user_id or phone (or both)"
        for key in seen:
            value = getattr(r, key)
            if value is None:
                continue
            if value in seen[key]:
                yield f"{where}.{key} is used twice"
            seen[key].add(value)
