"""Configuration: ``CTI_*`` environment variables over an optional TOML file.

Precedence, highest first: keyword arguments, environment (``CTI_AMI_HOST``...),
files in the directory named by ``CTI_SECRETS_DIR`` (one file per setting, named like its
variable in lower case, ``cti_ami_secret``: compose secrets in ``/run/secrets``, systemd
credentials in ``$CREDENTIALS_DIRECTORY``; surrounding whitespace dropped), the TOML file
named by ``CTI_CONFIG`` (or ``--config``), the defaults below.
Secrets are ``SecretStr``: they print as ``**********`` and never reach a log.
"""
from __future__ import annotations

import os
import re
import tomllib
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from cti.errors import ConfigError

_NODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}")
_BASE_URL = re.compile(r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")


def parse_peers(v: Any) -> tuple[tuple[str, str], ...]:
    """``ha_peers`` as ``((node, base URL), ...)``: from "a=http://h1:8765,b=http://h2:8765"
    (or pairs, or a mapping). Each node once, each URL a scheme and host[:port] (no path: the
    routes are the daemon's). Raises ValueError naming the bad item."""
    if isinstance(v, str):
        items: list[Any] = [i for i in v.split(",") if i.strip()]
    elif isinstance(v, dict):
        items = list(v.items())
    else:
        items = list(v)
    out: dict[str, str] = {}
    for item in items:
        if isinstance(item, str):
            node, sep, url = item.strip().partition("=")
            if not sep:
                raise ValueError(f"a peer is node=url: {item[:60]!r} (e.g. a=http://10.0.0.1:8765)")
        else:
            node, url = (str(x) for x in item)
        node, url = node.strip(), url.strip().rstrip("/")
        if not _NODE.fullmatch(node):
            raise ValueError(f"not a node name: {node[:60]!r}")
        if not _BASE_URL.fullmatch(url):
            raise ValueError(f"not a base URL (scheme://host[:port]): {url[:80]!r}")
        if node in out:
            raise ValueError(f"node {node!r} named twice")
        out[node] = url
    return tuple(out.items())


def read_toml(path: str | os.PathLike[str], what: str) -> dict[str, Any]:
    """The table in a TOML file. Raises ``ConfigError`` naming ``what`` and the file
    when it is missing, unreadable or not TOML."""
    p = Path(path)
    try:
        return tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{what} {str(p)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{what} {str(p)!r}: cannot read: {exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{what} {str(p)!r}: {exc}") from None


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "cti"


class AmiNode(BaseModel):
    """One Asterisk node of ``ami_nodes`` (docs/scale-out.md, "Several Asterisk nodes")."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    host: str = "127.0.0.1"
    port: int = Field(5038, ge=1, le=65535)
    user: str = "cti"
    secret: SecretStr = SecretStr("")
    # The file of the phones' PJSIP sections this node's Asterisk reads (default: phone_pjsip_conf).
    phone_pjsip_conf: str | None = None
    # Where the daemon reads this node's recording files (its recording_dir as this host
    # sees it: a mount); default: recording_read_dir (docs/scale-out.md).
    recording_read_dir: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        from cti.nodes import check_node_name
        return check_node_name(v)

    @field_validator("host", "user")
    @classmethod
    def _no_control_chars(cls, v: str) -> str:
        if re.search(r"[\x00-\x1f\x7f]", v):
            raise ValueError("must not contain control characters")
        return v

    @field_validator("phone_pjsip_conf", "recording_read_dir")
    @classmethod
    def _absolute(cls, v: str | None) -> str | None:
        if v is not None and (not v.startswith("/") or re.search(r"[\x00-\x1f\x7f]", v)):
            raise ValueError("an absolute path, without control characters")
        return v


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CTI_", extra="forbid", frozen=True)

    # AMI
    ami_host: str = "127.0.0.1"
    ami_port: int = Field(5038, ge=1, le=65535)
    ami_user: str = "cti"
    # No default that works: `cti serve` and `cti check` refuse an empty or known one.
    ami_secret: SecretStr = SecretStr("")
    ami_action_timeout: float = Field(5.0, gt=0, le=300)
    ami_ping_interval: float = Field(10.0, gt=0, le=3600)
    ami_reconnect_max: float = Field(15.0, gt=0, le=600)
    # Several Asterisk nodes (docs/scale-out.md): a list of {name, host, port, user,
    # secret} (TOML array of tables, or JSON in CTI_AMI_NODES). Empty: one node, named
    # ami_node_name, from the ami_* settings above. With several, a node whose AMI
    # connection stays lost ami_node_dead_after seconds is dead: its calls end by
    # estimate, the agents whose phones were on it are not ready "unreachable".
    ami_nodes: tuple[AmiNode, ...] = ()
    ami_node_name: str = "a"
    ami_node_dead_after: float = Field(10.0, gt=0, le=3600)
    # Channels of the inter-node PJSIP trunk start so (the endpoints are cti-trunk-<node>):
    # one that starts a call on a node is the far half of a call of another node.
    ami_trunk_prefix: str = "PJSIP/cti-trunk-"

    # PostgreSQL: a URL, or none for the embedded server in state_dir/pg
    database_url: SecretStr | None = None
    db_buffer_max: int = Field(100_000, ge=100)
    db_batch_max: int = Field(500, ge=1)
    # How many of the shared pool's connections a feature may hold at once, over the
    # defaults in cti.pg.FEATURE_MAX (api 10, hooks 8, ivr 4, reports 5, recording 3,
    # phones 2): e.g. CTI_DB_FEATURE_MAX='{"reports": 2}' (docs/architecture.md).
    db_feature_max: dict[str, int] = Field(default_factory=dict)

    # HTTP (API, dialplan hooks) and FastAGI
    http_host: str = "127.0.0.1"
    http_port: int = Field(8765, ge=0, le=65535)
    # Slow and greedy clients on the HTTP port (docs/api.md, "Connections"): the
    # whole request head must arrive within http_head_timeout seconds of the
    # connection opening (or of a later head's first byte); an idle keep-alive
    # connection is closed http_idle_timeout seconds after its last answer; one
    # client address holds at most http_client_max connections (0: no cap), and
    # all together at most http_max_connections (0: what fits under the open-files
    # limit beside the daemon's own needs). Excess connections get 503 at once.
    http_head_timeout: float = Field(10.0, ge=0.5, le=300)
    http_idle_timeout: float = Field(30.0, ge=0.5, le=3600)
    http_client_max: int = Field(128, ge=0, le=1_000_000)
    http_max_connections: int = Field(0, ge=0, le=10_000_000)
    # Reverse proxies whose X-Forwarded-For is believed (networks, e.g. 127.0.0.1/32 for a
    # Caddy on this host): a request from one of them is from the last address in that
    # header that is not itself a trusted proxy (docs/security.md, "Behind a proxy").
    http_trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()
    agi_host: str = "127.0.0.1"
    agi_port: int = Field(4573, ge=0, le=65535)

    state_dir: Path = Field(default_factory=default_state_dir)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"

    # ACD: the routing configuration (agents, skills, queues); unset = no ACD
    # (the dialplan then sends every caller to the app_queue fallback).
    acd_config: Path | None = None
    acd_default_queue: str = "support"
    # Tell waiting callers their position and estimated wait this often (0: never).
    acd_announce_every: float = Field(30.0, ge=0, le=3600)
    # Callbacks (docs/acd.md, "Callbacks"): how the customer is dialled
    # ({number} is the number, digits and an optional +), the caller ID they
    # see (empty: leave it to the trunk), how long their phone rings, how many
    # times they are tried and how long between tries.
    acd_callback_dial: str = "Local/{number}@cti-outbound"
    acd_callback_caller_id: str = ""
    acd_callback_ring_s: int = Field(30, ge=5, le=300)
    acd_callback_attempts: int = Field(3, ge=1, le=20)
    acd_callback_retry_s: float = Field(120.0, ge=0, le=86_400)

    # Dialplan hooks (api.dialplan_hooks): on unless `hooks` is false; then the shared
    # secret the dialplan sends in the X-CTI-Hook-Secret header is required
    # (the daemon does not start the hooks without it), and the Host names the
    # dialplan may reach them by, besides 127.0.0.1, ::1, localhost and http_host.
    hooks: bool = True
    hook_secret: SecretStr | None = None
    hook_hosts: list[str] = Field(default_factory=list)
    # IVR menu file (TOML, see docs/ivr.md); unset runs ivr/examples/demo.toml.
    ivr_menus: Path | None = None

    # API (docs/api.md): how long a login session lasts (seconds, from login);
    # who may read /metrics: loopback clients only, authenticated supervisors
    # and admins (a session or an API key), or anyone.
    session_ttl: float = Field(12 * 3600, ge=60, le=30 * 24 * 3600)
    metrics_access: Literal["loopback", "auth", "open"] = "loopback"
    # WebSocket hub: events kept per user for a reconnecting client to catch up
    # (at most this many, none older than this many seconds; 0: no age bound),
    # and events queued per connection before a slow client is dropped.
    ws_replay_max: int = Field(1000, ge=10, le=100_000)
    ws_replay_max_age_s: float = Field(900.0, ge=0, le=7 * 86_400)
    ws_queue_max: int = Field(500, ge=10, le=100_000)
    # Wallboard and reports (docs/wallboard.md): the centre's time zone (local
    # intervals, "today"), the board's thresholds file (TOML; unset: defaults
    # from the routing configuration), and the least time between two pushes.
    timezone: str = "UTC"
    wallboard_config: Path | None = None
    wallboard_push_s: float = Field(0.5, ge=0.05, le=60)

    # Agents' phones (docs/softphone.md): the file the daemon writes its
    # devices' PJSIP sections to and has Asterisk reload (unset: none written;
    # `cti pjsip` prints them), the digest realm of their secrets, the
    # WebSocket browser phones register through, and the SIP domain they use.
    phone_pjsip_conf: Path | None = None
    phone_realm: str = Field("cti", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    phone_ws_url: str = Field("ws://127.0.0.1:8088/ws", pattern=r"^wss?://[^\s\x00-\x1f\"'<>]+$")
    phone_sip_domain: str = Field("127.0.0.1", pattern=r"^[A-Za-z0-9.:\[\]-]{1,253}$")

    # Recording (docs/recording.md): the policy, retention and QA form file
    # (TOML; unset: record on demand only, keep 90 days); the directory Asterisk
    # writes the files to, as Asterisk sees it, and the same directory as the
    # daemon sees it (unset: the same path; they differ when Asterisk runs in a
    # chroot or container); how often the retention sweep and QA sampling run
    # (seconds; 0: only by `cti recordings sweep|sample`).
    recording_config: Path | None = None
    recording_dir: str = "/var/spool/asterisk/monitor/cti"
    recording_read_dir: Path | None = None
    recording_sweep_every: float = Field(3600.0, ge=0, le=7 * 86_400)

    # Emergency mode (docs/emergency.md): where spoken and uploaded announcements
    # are written (a directory Asterisk can read: prompts are played by this path
    # without extension), this daemon's node/site name for switches scoped to a
    # node, how often the switches are read back from the database (seconds: the
    # CLI's and other nodes' changes, scheduled starts), the phone feature code's PIN
    # (unset: the feature code is refused).
    # The campaign runner (docs/dialer.md, "The runner"): on only when asked (it places
    # calls). How a lead's number is dialled ({number}: E.164), how often running
    # campaigns are looked at (an agent freeing or a call ending also wakes it), how long
    # after a connected call ended its lead waits for the agent's result before the runner
    # closes it as answered_no_result. The share of AMD's "machine" verdicts that were
    # people (calibrated: bench/amd_greetings.py on your own greetings; 0: none counted),
    # counted as live answers abandoned in every campaign's rates and fed to its pacing.
    dialer_enabled: bool = False
    dialer_dial: str = "Local/{number}@cti-outbound"
    dialer_tick_s: float = Field(1.0, ge=0.1, le=60)
    dialer_result_timeout_s: float = Field(1800.0, ge=60, le=7 * 86400)
    dialer_amd_false_positive_share: float = Field(0.0, ge=0.0, le=0.9)
    emergency_prompt_dir: str = "/var/lib/cti/emergency"
    node_name: str = Field("main", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    emergency_poll_s: float = Field(1.0, ge=0.1, le=60)
    emergency_pin: SecretStr | None = None

    # Tickets (docs/tickets.md): the ticket types file (TOML; unset: the built-in
    # types), and how a dispatch notifies the engineer: `log` (a log line with
    # ids only) or `webhook` (a `ticket.dispatched` event to the webhook
    # subscriptions that want it).
    ticket_types: Path | None = None
    ticket_notify: Literal["log", "webhook"] = "log"

    # Webhooks (docs/security.md, "Webhooks"): networks a delivery may connect to
    # although they are loopback, link-local, private or reserved (comma-separated
    # CIDRs or addresses, e.g. "10.20.0.0/16, 127.0.0.1"); empty: public addresses only.
    webhook_allow: Annotated[tuple[str, ...], NoDecode] = ()

    # High availability (docs/ha.md): with ha_cluster set, this process contends for the
    # leadership of that cluster in PostgreSQL and routes calls only while it leads; unset,
    # it leads alone with epoch 1. ha_node names this process in the lease (default:
    # host name and pid). Lease timing in seconds: ha_renew_every < ha_renew_within < ha_ttl.
    ha_cluster: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
    ha_node: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,199}$")
    ha_ttl: float = Field(3.0, gt=0, le=600)
    ha_renew_within: float = Field(2.0, gt=0, le=600)
    ha_renew_every: float = Field(0.5, gt=0, le=600)
    ha_poll_every: float = Field(0.5, gt=0, le=60)
    # Where clients reach each node of the pair (docs/ha.md, "Clients follow the leader"):
    # "a=http://10.0.0.1:8765,b=http://10.0.0.2:8765", the same on every node. A standby
    # forwards commands to the leader's address (with a broker) or names it in its 503;
    # desktops try the others when theirs is away; CORS lets them call these origins.
    ha_peers: Annotated[tuple[tuple[str, str], ...], NoDecode] = ()
    # A standby's ACD shadows the leader's (its router follows the leader's decisions) and
    # takes over from memory; false: it starts cold on a takeover, as after a restart.
    ha_warm: bool = True

    # E-mail as a channel (docs/mail.md): mail_listen is where the SMTP receiver listens
    # ("127.0.0.1:2525"; unset, the default: no receiver); a mail over mail_max_bytes
    # (the whole message, attachments included) is refused with a 552; new threads are
    # filed to mail_queue. Replies go out through the relay mail_smtp ("host:port", no
    # TLS or login: a local MTA) from mail_from (unset: replies are refused, 503).
    mail_listen: str | None = None
    mail_max_bytes: int = Field(10_000_000, ge=10_000, le=100_000_000)
    mail_queue: str = Field("email", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$")
    mail_smtp: str | None = None
    mail_from: str | None = Field(None, pattern=r"^[^@\s<>\"',;]{1,64}@[A-Za-z0-9.-]{1,253}$")
    mail_from_name: str | None = Field(None, max_length=100, pattern=r"^[^\x00-\x1f\x7f]*$")

    # The event broker (docs/broker.md): with broker_url set (NATS with JetStream,
    # "nats://host:4222"; it may carry credentials, so it is a secret), every call event,
    # ACD decision and agent state goes to the stream broker_stream under subjects
    # cti.<broker_cluster>.> (broker_cluster defaults to ha_cluster, else "main").
    # Unset (the default): no broker, the in-process bus alone. broker_buffer_max: messages
    # held while the broker is away; past it new ones are dropped and counted (/metrics).
    broker_url: SecretStr | None = None
    broker_stream: str = Field("CTI", pattern=r"^[A-Za-z0-9_-]{1,64}$")
    broker_cluster: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,99}$")
    broker_buffer_max: int = Field(10_000, ge=1, le=10_000_000)
    # Stream limits the daemon sets on the stream it makes (and on an existing one that has
    # other values): the oldest messages go first past either. A client resuming from before
    # what the stream keeps gets a resync. 0: no limit of that kind.
    broker_max_age_s: float = Field(86_400.0, ge=0, le=365 * 86_400)
    broker_max_bytes: int = Field(1 << 30, ge=0, le=1 << 50)
    # Publishes awaiting JetStream's acknowledgement at once (1: one at a time).
    broker_window: int = Field(64, ge=1, le=10_000)

    # An API node (`cti api-node`, docs/scale-out.md): the leader's HTTP base URL, to which
    # it forwards every request that is not /ws (commands and reads, with the client's own
    # credential), and how many of the broker's messages it keeps to replay on resume.
    node_leader_url: str | None = Field(None, pattern=r"^https?://[^\s/?#]+/?$")
    node_ring_max: int = Field(100_000, ge=10, le=10_000_000)

    # Messaging and the web callback form (docs/messaging.md). messaging_secret: the
    # HMAC key shared with the SMS/messaging provider (unset: the inbound route answers
    # 503); messaging_outbound_url: where agents' replies are POSTed (unset: no replies);
    # messaging_region: the country (ISO 3166, e.g. GB) of numbers given without +;
    # messaging_queue: the queue new conversations are filed to (default acd_default_queue);
    # a reply is tried messaging_attempts times, messaging_retry_s * 2**n apart.
    # callback_form_queue: the queue web callback requests wait in (unset: the form is
    # off); callback_form_countries: ISO codes of the countries it calls (empty: any).
    messaging_secret: SecretStr | None = None
    messaging_outbound_url: str | None = Field(None, pattern=r"^https?://[^\s\x00-\x1f\"'<>]+$")
    messaging_region: str | None = Field(None, pattern=r"^[A-Z]{2}$")
    messaging_queue: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$")
    messaging_attempts: int = Field(5, ge=1, le=50)
    messaging_retry_s: float = Field(2.0, ge=0.01, le=3600)
    callback_form_queue: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.:@+-]{0,63}$")
    callback_form_countries: Annotated[tuple[str, ...], NoDecode] = ()

    @field_validator("mail_listen", "mail_smtp")
    @classmethod
    def _host_port(cls, v: str | None) -> str | None:
        if v is None:
            return v
        m = re.fullmatch(r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]{1,253}):([0-9]{1,5})", v)
        if not m or not 0 < int(m.group(2)) < 65536:
            raise ValueError("must be host:port, e.g. 127.0.0.1:2525")
        return v

    @field_validator("ami_host", "ami_user", "http_host", "agi_host")
    @classmethod
    def _no_control_chars(cls, v: str) -> str:
        if not v or any(c in v for c in "\r\n\0"):
            raise ValueError("must be non-empty and hold no CR, LF or NUL")
        return v

    @field_validator("db_feature_max")
    @classmethod
    def _feature_max(cls, v: dict[str, int]) -> dict[str, int]:
        from cti.pg import feature_limits
        feature_limits(v)             # raises ValueError naming the feature
        return v

    @field_validator("ami_node_name")
    @classmethod
    def _node_name(cls, v: str) -> str:
        from cti.nodes import check_node_name
        return check_node_name(v)

    @field_validator("ami_nodes")
    @classmethod
    def _nodes(cls, v: tuple[AmiNode, ...]) -> tuple[AmiNode, ...]:
        from cti.nodes import check_nodes
        check_nodes([n.name for n in v])
        return v

    @field_validator("hook_hosts")
    @classmethod
    def _host_names(cls, v: list[str]) -> list[str]:
        for name in v:
            if not re.fullmatch(r"[A-Za-z0-9.:\[\]-]{1,253}", name):
                raise ValueError(f"{name!r} is not a host name or address")
        return [name.lower().rstrip(".") for name in v]

    @field_validator("acd_callback_dial", "acd_callback_caller_id", "dialer_dial")
    @classmethod
    def _dialplan_value(cls, v: str, info: Any) -> str:
        # Travels in an Originate's Variable header: a comma would split it.
        if any(c in v for c in "\r\n\0,"):
            raise ValueError("must hold no CR, LF, NUL or comma")
        if info.field_name in ("acd_callback_dial", "dialer_dial") and v.count("{number}") != 1:
            raise ValueError("must contain {number} once")
        return v

    @field_validator("timezone")
    @classmethod
    def _zone(cls, v: str) -> str:
        from zoneinfo import ZoneInfo
        try:
            ZoneInfo(v)
        except (ValueError, KeyError, OSError):
            raise ValueError("must be an IANA time zone name, e.g. Europe/London") from None
        return v

    @field_validator("recording_dir", "emergency_prompt_dir")
    @classmethod
    def _recording_dir(cls, v: str) -> str:
        # Travels in MixMonitor's File header and its r()/t() options.
        if not re.fullmatch(r"/[A-Za-z0-9/._-]*", v) or "/../" in v + "/" or "/./" in v + "/":
            raise ValueError("must be an absolute path of letters, digits, / . _ - (no '..')")
        return v.rstrip("/") or "/"

    @field_validator("webhook_allow", "http_trusted_proxies", mode="before")
    @classmethod
    def _networks(cls, v: Any) -> tuple[str, ...]:
        import ipaddress
        items = v.split(",") if isinstance(v, str) else list(v)
        out = []
        for item in (str(i).strip() for i in items):
            if item:
                try:
                    out.append(str(ipaddress.ip_network(item, strict=False)))
                except ValueError:
                    raise ValueError(f"not a network or address: {item[:60]!r} (e.g. 127.0.0.0/8, 10.1.2.3)") from None
        return tuple(out)

    @field_validator("ha_peers", mode="before")
    @classmethod
    def _peers(cls, v: Any) -> tuple[tuple[str, str], ...]:
        return parse_peers(v)

    @field_validator("callback_form_countries", mode="before")
    @classmethod
    def _countries(cls, v: Any) -> tuple[str, ...]:
        items = v.split(",") if isinstance(v, str) else list(v)
        out = tuple(str(i).strip().upper() for i in items if str(i).strip())
        for code in out:
            if not re.fullmatch(r"[A-Z]{2}", code):
                raise ValueError(f"not an ISO 3166 country code: {code[:10]!r} (e.g. GB, DE)")
        return out

    @model_validator(mode="after")
    def _lease_timing(self) -> Settings:
        if not self.ha_renew_every < self.ha_renew_within < self.ha_ttl:
            raise ValueError("ha timing needs ha_renew_every < ha_renew_within < ha_ttl "
                             f"(got {self.ha_renew_every}, {self.ha_renew_within}, {self.ha_ttl})")
        return self

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and not v.get_secret_value().startswith(("postgres://", "postgresql://")):
            raise ValueError("must start with postgresql:// (or be unset for the embedded server)")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        secrets_dir = os.environ.get("CTI_SECRETS_DIR")
        if secrets_dir and Path(secrets_dir).is_dir():
            sources.append(SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir))
        path = os.environ.get("CTI_CONFIG")
        if path:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


# Secrets that ship in examples, old versions of this repository or common
# tutorials: whoever knows the project knows them. Compared in lower case.
KNOWN_DEFAULT_SECRETS = frozenset({
    "", "cti-secret", "cti-demo-secret", "cti-load-secret", "change-me", "changeme", "change_me",
    "secret", "password", "postgres", "cti", "admin", "amp111",
})


def default_secret_problems(settings: Settings) -> list[str]:
    """The settings whose secret is empty or a known default, each named with its
    variable, as messages; empty when there are none. Pure."""
    problems = []
    if not settings.ami_nodes and settings.ami_secret.get_secret_value().strip().lower() in KNOWN_DEFAULT_SECRETS:
        what = "is not set" if not settings.ami_secret.get_secret_value() else "is a known default"
        problems.append(f"ami_secret (CTI_AMI_SECRET) {what}: set the AMI user's own random secret "
                        "(asterisk-config/manager.conf, docs/security.md)")
    for node in settings.ami_nodes:
        if node.secret.get_secret_value().strip().lower() in KNOWN_DEFAULT_SECRETS:
            what = "is not set" if not node.secret.get_secret_value() else "is a known default"
            problems.append(f"ami_nodes ({node.name}) secret {what}: set each node's AMI user's own random "
                            "secret (docs/scale-out.md)")
    if settings.database_url is not None:
        from urllib.parse import urlsplit

        try:
            password = urlsplit(settings.database_url.get_secret_value()).password
        except ValueError:
            password = None
        if password is not None and password.strip().lower() in KNOWN_DEFAULT_SECRETS:
            problems.append("database_url (CTI_DATABASE_URL) has a known default password: "
                            "give the database user its own random one")
    if settings.hook_secret is not None:
        hook = settings.hook_secret.get_secret_value().strip().lower()
        if hook and hook in KNOWN_DEFAULT_SECRETS:
            problems.append("hook_secret (CTI_HOOK_SECRET) is a known default: use a random one")
    return problems


_SECRET_KEYS = ("ami_secret", "database_url", "hook_secret", "emergency_pin")


def config_file_problem(path: str, mode: int, text: str) -> str | None:
    """Why the config file at ``path`` (permission bits ``mode``, contents ``text``)
    must not be used: it holds a secret and others may read it. None when fine. Pure."""
    if not mode & 0o004:
        return None
    keys = [k for k in _SECRET_KEYS if re.search(rf"(?m)^\s*{k}\s*=", text)]
    if not keys:
        return None
    return (f"config file {path!r} holds {', '.join(keys)} and is readable by every user: "
            f"chmod 600 it (or 640 with the daemon's group)")


def secret_file_problems(files: list[tuple[str, int]]) -> list[str]:
    """For (path, permission bits) of the files in ``CTI_SECRETS_DIR``: one message per
    file holding a secret that every user may read. Pure."""
    names = {f"cti_{k}" for k in _SECRET_KEYS}
    return [f"secret file {path!r} is readable by every user: chmod 600 it (or 640 with the daemon's group)"
            for path, mode in files if Path(path).name.lower() in names and mode & 0o004]


def secret_files() -> list[tuple[str, int]]:
    """(path, mode) of each file in ``CTI_SECRETS_DIR`` (none when unset or absent)."""
    d = os.environ.get("CTI_SECRETS_DIR")
    if not d or not Path(d).is_dir():
        return []
    out = []
    for p in sorted(Path(d).iterdir()):
        try:
            out.append((str(p), p.stat().st_mode))
        except OSError:
            continue
    return out


def load_settings(config_file: str | os.PathLike[str] | None = None, **overrides: Any) -> Settings:
    """Read the settings.

    Returns: the validated ``Settings``.
    Raises: ``ConfigError`` naming the first bad field and why, or an unreadable file.
    """
    previous = os.environ.get("CTI_CONFIG")
    if config_file is not None:
        os.environ["CTI_CONFIG"] = str(config_file)
    try:
        path = os.environ.get("CTI_CONFIG")
        if path and not Path(path).is_file():
            raise ConfigError(f"config file {path!r} does not exist")
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc)) from None
    except ValueError as exc:  # a TOML syntax error
        raise ConfigError(f"config file {os.environ.get('CTI_CONFIG')!r}: {exc}") from None
    finally:
        if config_file is not None:
            if previous is None:
                os.environ.pop("CTI_CONFIG", None)
            else:
                os.environ["CTI_CONFIG"] = previous


def _describe(exc: ValidationError) -> str:
    lines = []
    for err in exc.errors(include_url=False, include_input=False):
        field = ".".join(str(p) for p in err["loc"]) or "(settings)"
        env = f"CTI_{field.upper()}" if err["loc"] else ""
        where = f"{field} ({env})" if env else field
        lines.append(f"invalid setting {where}: {err['msg']}")
    return "; ".join(lines)
