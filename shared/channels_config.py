"""The `contacts` and `channels` sections of the config file: who can be reached, and how.

A channel is one of `webhook | cap | email | telegram | slack | sms`, told apart by its `type`
(a discriminated union), each with its own keys and the shared retry settings. Every model
forbids unknown keys, so a typo is named at start instead of silently ignored. Secrets are
`SecretStr` (written as `${ENV_VAR}` in the file; `shared.config` expands them), so they do
not show up in a repr, a log line or an error message.
"""

from __future__ import annotations

import re
import string
from typing import Annotated, Any, Iterable, Literal, Union

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, TypeAdapter, field_validator, model_validator

from shared.ids import Id
from shared.signing import problem as signing_secret_problem
from shared.strict import Strict

_EMAIL = re.compile(r"^[^@\s<>\"',;]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+$")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


class _Strict(Strict):
    model_config = ConfigDict(frozen=True)


def _http_url(v: str) -> str:
    if not re.match(r"^https?://[^\s/]+", v):
        raise ValueError("must be an http:// or https:// URL")
    return v


HttpUrl = Annotated[str, AfterValidator(_http_url)]


def normalise_phone(v: str) -> str:
    """An Indonesian number in any usual spelling (0812…, 62812…, +62 812-…) becomes E.164;
    other countries must already be E.164 (+<country><number>)."""
    import lokal

    raw = v.strip()
    compact = re.sub(r"[\s().-]", "", raw)
    if compact.startswith("+") and not compact.startswith("+62"):
        if not _E164.match(compact):
            raise ValueError("must be an E.164 number such as +6281234567890")
        return compact
    info = lokal.parse_phone(raw)
    if not info.valid or not info.e164:
        why = "; ".join(i.message for i in info.errors) or "not a valid number"
        raise ValueError(f"not a valid Indonesian phone number ({why})")
    return info.e164


class ContactConfig(_Strict):
    """One person and the addresses each channel type uses to reach them."""

    id: Id
    name: Annotated[str, Field(min_length=1, max_length=200)]
    language: Literal["id", "en"] = "id"
    telegram_chat_id: int | str | None = None
    # Telegram user ids whose reply to a page acknowledges as this contact. Default: the chat
    # id when it is a private chat (there the user id is the chat id); a group chat needs them
    # listed, else no reply in it acknowledges (any member could otherwise ack as the contact).
    telegram_user_ids: list[Annotated[int, Field(gt=0)]] | None = None
    email: str | None = None
    phone: str | None = None
    # A personal endpoint for webhook channels: when set, a webhook channel sending to this
    # contact posts here (signed with the channel's secret) instead of the channel's url.
    webhook: str | None = None

    @field_validator("telegram_chat_id", mode="before")
    @classmethod
    def _chat_id(cls, v: Any) -> Any:
        # A user or group id (groups are negative; quoted is fine) or a public @channelname.
        if v is None or (isinstance(v, int) and not isinstance(v, bool)):
            return v
        if isinstance(v, str) and re.fullmatch(r"-?[0-9]{1,20}", v.strip()):
            return int(v)
        if isinstance(v, str) and re.fullmatch(r"@[A-Za-z0-9_]{5,64}", v):
            return v
        raise ValueError("must be a numeric chat id or an @channelname")

    def reply_user_ids(self) -> frozenset[int]:
        """The Telegram user ids that may acknowledge as this contact by replying."""
        if self.telegram_user_ids is not None:
            return frozenset(self.telegram_user_ids)
        chat = self.telegram_chat_id
        return frozenset({chat}) if isinstance(chat, int) and chat > 0 else frozenset()

    @field_validator("email")
    @classmethod
    def _email(cls, v: str | None) -> str | None:
        if v is not None and not _EMAIL.match(v):
            raise ValueError("not an e-mail address")
        return v

    @field_validator("phone")
    @classmethod
    def _phone(cls, v: str | None) -> str | None:
        return None if v is None else normalise_phone(v)

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, v: str | None) -> str | None:
        return None if v is None else _http_url(v)


class _ChannelBase(_Strict):
    """Settings every channel has: how long one send may take, and how to retry."""

    id: Id
    timeout_s: float = Field(10.0, gt=0, le=120)
    max_attempts: int = Field(5, ge=1, le=50)
    backoff_initial_s: float = Field(2.0, ge=0, le=3600)
    backoff_max_s: float = Field(300.0, ge=0, le=86400)

    @model_validator(mode="after")
    def _backoff_order(self) -> "_ChannelBase":
        if self.backoff_max_s < self.backoff_initial_s:
            raise ValueError("backoff_max_s must not be smaller than backoff_initial_s")
        return self


class WebhookChannelConfig(_ChannelBase):
    """POSTs the contract JSON, signed with HMAC-SHA256 over timestamp, delivery id and raw body."""

    type: Literal["webhook"]
    url: HttpUrl
    secret: SecretStr
    # Mask personal data in summary and reasons (same shape, masked text) for receivers
    # outside the data controller's own systems.
    mask_pii: bool = False

    @field_validator("secret")
    @classmethod
    def _signing_secret(cls, v: SecretStr) -> SecretStr:
        why = signing_secret_problem(v.get_secret_value())
        if why:
            raise ValueError(why)
        return v


class CapChannelConfig(WebhookChannelConfig):
    """POSTs the incident's CAP 1.2 alert (application/cap+xml), signed exactly like a webhook."""

    type: Literal["cap"]  # type: ignore[assignment]
    # CAP's `sender`, e.g. pantau@pantau.kaltaraprov.go.id; default: pantau@<notify.public_url's host>,
    # the sender the notify API's /v1/cap alerts carry.
    sender: Annotated[str, Field(pattern=r"^[^\s,<&]+$", max_length=200)] | None = None


class EmailChannelConfig(_ChannelBase):
    """Plain-text e-mail through an SMTP relay."""

    type: Literal["email"]
    host: Annotated[str, Field(min_length=1)]
    port: int = Field(587, ge=1, le=65535)
    starttls: bool = True
    username: str | None = None
    password: SecretStr | None = None
    sender: str

    @field_validator("sender")
    @classmethod
    def _sender(cls, v: str) -> str:
        addr = v.rsplit("<", 1)[-1].rstrip(">").strip()
        if not _EMAIL.match(addr):
            raise ValueError("not an e-mail address (write it as 'Pantau <pantau@example.go.id>' or an address)")
        return v

    @model_validator(mode="after")
    def _auth_pair(self) -> "EmailChannelConfig":
        if (self.username is None) != (self.password is None):
            raise ValueError("give both username and password, or neither")
        return self


class TelegramChannelConfig(_ChannelBase):
    """Telegram Bot API `sendMessage`; with `poll_replies`, also `getUpdates`, so that a reply
    to a page ("ack", "ok", "terima", "siap") acknowledges its incident (services.notify.replies)."""

    type: Literal["telegram"]
    bot_token: SecretStr
    base_url: str = "https://api.telegram.org"
    # Read replies to pages with getUpdates (long polling). Leave it off when something else
    # reads this bot's updates (a webhook set on the bot, another program): Telegram gives a
    # bot's updates to one reader only.
    poll_replies: bool = False
    # How long one getUpdates call waits for a reply to arrive (Telegram allows up to 50 s);
    # the HTTP timeout of that call is this plus `timeout_s`.
    poll_timeout_s: int = Field(25, ge=1, le=50)
    # Answer each recognised reply with one short line (in the replier's language) saying
    # whether it took the incident, or who already had, or that it is resolved.
    confirm_replies: bool = True

    @field_validator("base_url")
    @classmethod
    def _url(cls, v: str) -> str:
        return _http_url(v).rstrip("/")

    @field_validator("bot_token")
    @classmethod
    def _token(cls, v: SecretStr) -> SecretStr:
        if not re.match(r"^[0-9]+:[A-Za-z0-9_-]+$", v.get_secret_value()):
            raise ValueError("not a Telegram bot token (digits, a colon, then letters)")
        return v


class SlackChannelConfig(_ChannelBase):
    """A Slack incoming webhook; its URL is itself the secret."""

    type: Literal["slack"]
    webhook_url: SecretStr

    @field_validator("webhook_url")
    @classmethod
    def _url(cls, v: SecretStr) -> SecretStr:
        _http_url(v.get_secret_value())
        return v


SMS_FIELDS = frozenset({"to", "to_digits", "text", "delivery_id"})


class SmsChannelConfig(_ChannelBase):
    """An HTTP SMS or WhatsApp gateway, described by a request template.

    `body_template` is a Python format string; its fields are `{to}` (E.164, +62…),
    `{to_digits}` (62…, as WhatsApp gateways want it), `{text}` and `{delivery_id}` (the same on
    every retry, for gateways that accept a client reference). Values are escaped for the
    `encoding` (inside a JSON string, or form-urlencoded); literal braces are doubled:
    `{{"to": "{to}", "message": "{text}"}}`. With `method: GET` the rendered template is the
    query string."""

    type: Literal["sms"]
    url: HttpUrl
    method: Literal["POST", "PUT", "GET"] = "POST"
    body_template: str
    encoding: Literal["json", "form"] = "json"
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    max_chars: int = Field(160, ge=70, le=1600)

    @field_validator("body_template")
    @classmethod
    def _template(cls, v: str) -> str:
        try:
            names = {f for _, f, _, _ in string.Formatter().parse(v) if f is not None}
        except ValueError as e:
            raise ValueError(f"not a valid format string ({e}); write literal braces as {{{{ and }}}}") from None
        unknown = names - SMS_FIELDS
        if any(not n.isidentifier() for n in unknown):
            raise ValueError("not a valid format string: write literal braces as {{ and }}, "
                             'e.g. {{"to": "{to}", "message": "{text}"}}')
        if unknown:
            raise ValueError(f"unknown field(s) {', '.join(sorted('{' + n + '}' for n in unknown))}; "
                             f"use {{to}}, {{to_digits}}, {{text}}, {{delivery_id}}")
        if "text" not in names or not names & {"to", "to_digits"}:
            raise ValueError("must contain {text} and {to} (or {to_digits})")
        try:
            v.format(**{n: "x" for n in SMS_FIELDS})
        except (ValueError, IndexError, KeyError) as e:
            raise ValueError(f"not a valid format string ({e})") from None
        return v

    @field_validator("headers")
    @classmethod
    def _headers(cls, v: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for k in v:
            if not re.match(r"^[A-Za-z0-9-]+$", k):
                raise ValueError(f"{k!r} is not a valid header name")
        return v


ChannelConfig = Annotated[
    Union[WebhookChannelConfig, CapChannelConfig, EmailChannelConfig, TelegramChannelConfig, SlackChannelConfig, SmsChannelConfig],
    Field(discriminator="type"),
]

CHANNEL_TYPES = ("webhook", "cap", "email", "telegram", "slack", "sms")

_channel_adapter: TypeAdapter[Any] = TypeAdapter(ChannelConfig)


class DeliverySettings(_Strict):
    """How the notify service's delivery worker runs (`notify.delivery` in the config)."""

    concurrency: int = Field(16, ge=1, le=1024)
    poll_interval_s: float = Field(0.5, gt=0, le=60)
    # A claimed job is taken over by another worker `timeout_s + lease_margin_s` after its
    # claim if the claimer has not recorded an outcome by then (it died).
    lease_margin_s: float = Field(30.0, gt=0, le=3600)
    retention_days: int = Field(30, ge=1, le=3650)
    dead_letter_max: int = Field(10_000, ge=100)


def channel_config(item: Any) -> Any:
    """One channel, from a dict or any pydantic model holding the same keys, as its typed model
    (raises pydantic's ValidationError)."""
    if isinstance(item, BaseModel) and not isinstance(item, _ChannelBase):
        item = item.model_dump()
    return _channel_adapter.validate_python(item)


def channel_configs(items: Iterable[Any]) -> list[Any]:
    """Typed channels; problems raise `shared.config.ConfigError` naming `channels[i].key`."""
    return _typed("channels", items, channel_config)


def contact_configs(items: Iterable[Any]) -> list[ContactConfig]:
    """Typed contacts; problems raise `shared.config.ConfigError` naming `contacts[i].key`."""
    return _typed("contacts", items, lambda i: i if isinstance(i, ContactConfig) else ContactConfig.model_validate(
        i.model_dump() if isinstance(i, BaseModel) else i))


def _typed(section: str, items: Iterable[Any], make: Any) -> list[Any]:
    from pydantic import ValidationError

    from shared.config import ConfigError

    out, problems = [], []
    for n, item in enumerate(items):
        try:
            out.append(make(item))
        except ValidationError as exc:
            for e in exc.errors(include_url=False, include_input=False):
                # The union's tag (the channel type) is not part of the key path.
                loc = [p for p in e["loc"] if not (section == "channels" and p in CHANNEL_TYPES and p == e["loc"][0])]
                path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc)
                msg = "unknown key" if e["type"] == "extra_forbidden" else e["msg"].removeprefix("Value error, ")
                problems.append(f"{section}[{n}]{path}: {msg}")
    if problems:
        raise ConfigError(problems)
    return out
