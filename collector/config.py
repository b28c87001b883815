"""Configuration: one validated object built from defaults, a YAML file, ``.env`` and the environment.

Precedence, lowest first: the defaults below, the YAML file, a ``.env`` file, the process
environment. Section keys are overridden with ``COLLECTOR_<SECTION>__<KEY>`` (for example
``COLLECTOR_WRITER__BATCH_SIZE=1000``). A value for a text key (passwords, DSNs, names, paths) is
taken exactly as given; any other value is read as a YAML scalar, so ``[1, 2, 4]`` is a list and
``null`` is none. A ``COLLECTOR_*`` variable that names no setting is an error, as is an unknown key.
The seed's ``ORACLE_HOST``, ``ORACLE_PORT``, ``ORACLE_SERVICE_NAME``, ``ORACLE_USER`` and
``ORACLE_PASSWORD`` (and ``ORACLE_DSN``, ``ORACLE_PASSWORD_FILE``) set the Oracle sink, and select it
when no sink type is configured. Every problem is reported at start with the key that has it and
where its value came from.
"""

from __future__ import annotations

import ipaddress
import os
import re
import stat
import types
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from collector.redaction import (
    MASK,
    DsnTarget,
    dsn_secrets,
    dsn_target,
    redact_dsn,
    split_oracle_credentials,
)
from collector.sinks.base import IDENTIFIER, ColumnSpec, InvalidColumnName
from collector.sinks.oracle_errors import MAX_BATCH_ERRORS

ENV_PREFIX = "COLLECTOR_"
ENV_NESTING = "__"
SECRET_MASK = MASK
NON_SETTING_VARIABLES = frozenset({"COLLECTOR_CONFIG"})
"""``COLLECTOR_*`` variables that are not settings (the configuration file's path)."""


class ConfigError(ValueError):
    """The configuration cannot be used; the message names every key at fault."""


class _Section(BaseModel):
    # Unknown keys are errors: a misspelt key silently ignored is a setting silently lost.
    model_config = ConfigDict(extra="forbid", frozen=True)


class _PasswordSection(_Section):
    """A section that takes a password inline or from a file (read again at every use, so a
    rotated password file needs no restart)."""

    password: SecretStr | None = None
    password_file: Path | None = None

    @field_validator("password_file")
    @classmethod
    def _password_file_usable(cls, value: Path | None) -> Path | None:
        if value is not None:
            read_password_file(value)
        return value

    def secret(self) -> str | None:
        """The password from ``password`` or the first line of ``password_file``."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return read_password_file(self.password_file)
        return None

    def readable_secret(self) -> str | None:
        """The password, or None where the file cannot be read now (for masking, never fatal)."""
        try:
            return self.secret()
        except ValueError:
            return None


class SourceConfig(_Section):
    """Where values come from: the built-in simulator, or a DataQueue the host application gives.
    (:class:`MqttSourceConfig` is the third kind: values from an MQTT broker.)"""

    type: Literal["simulator", "external"] = "simulator"
    groups: Annotated[int, Field(ge=1, le=10_000)] = 10
    tags_per_group: Annotated[int, Field(ge=1, le=100_000)] = 100
    tags: Annotated[int | None, Field(ge=1, le=10_000_000)] = None
    """Total tag count spread evenly over the groups; overrides tags_per_group (3491 for the spec's load)."""
    interval_s: Annotated[float, Field(gt=0, le=3600)] = 1.0
    bad_ratio: Annotated[float, Field(ge=0, le=1)] = 0.0
    seed: int = 1
    ledger: Path | None = None
    """If set, the simulator writes every value it generates to this CSV file."""
    naive_timestamps: Literal["utc", "local"] = "utc"
    """How intake reads a collection timestamp that carries no timezone."""


class MqttTlsConfig(_Section):
    """TLS to the broker: ``ca_file`` to trust a private CA, a client certificate if the broker asks."""

    enabled: bool = False
    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    insecure: bool = False
    """Skip the host name check (a test broker with a self-signed certificate); never in a plant."""

    @field_validator("ca_file", "cert_file", "key_file")
    @classmethod
    def _readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a readable file")
        return value


class MqttSourceConfig(_PasswordSection):
    """Values arrive as JSON messages on an MQTT broker (see docs/intake.md).

    The session is persistent (clean start off, ``session_expiry_s``) and every message is
    acknowledged only after its values are accepted, so the broker keeps what this collector has not
    taken, across a restart of either side.
    """

    type: Literal["mqtt"]
    host: Annotated[str, Field(min_length=1)] = "127.0.0.1"
    port: Annotated[int | None, Field(ge=1, le=65535)] = None
    """Default 1883, or 8883 with TLS."""
    protocol: Literal["5", "3.1.1"] = "5"
    tls: MqttTlsConfig = Field(default_factory=MqttTlsConfig)
    username: str | None = None
    client_id: Annotated[str | None, Field(min_length=1, max_length=128)] = None
    """Must be stable across restarts (the broker keeps the session under it) and unique per
    collector. Default: ``collector-<host name>``."""
    session_expiry_s: Annotated[int, Field(ge=0, le=4_294_967_295)] = 86_400
    """How long the broker keeps the session (and the messages waiting for it) while disconnected."""
    topics: Annotated[list[str], Field(min_length=1)] = Field(default_factory=lambda: ["plant/#"])
    shared_group: str | None = None
    """Subscribe as ``$share/<group>/<topic>``: the collectors in one group split the messages."""
    qos: Literal[0, 1] = 1
    keepalive_s: Annotated[int, Field(ge=5, le=65535)] = 30
    reconnect_min_s: Annotated[int, Field(ge=1, le=3600)] = 1
    """Reconnect backoff: the first wait, doubled after every failed attempt up to reconnect_max_s."""
    reconnect_max_s: Annotated[int, Field(ge=1, le=3600)] = 60
    receive_maximum: Annotated[int, Field(ge=1, le=65535)] = 100
    """MQTT 5: how many unacknowledged messages the broker may send ahead."""
    max_payload_bytes: Annotated[int, Field(ge=1024, le=268_435_455)] = 4 * 1024 * 1024
    naive_timestamps: Literal["utc", "local"] = "utc"

    @field_validator("topics")
    @classmethod
    def _topic_filters(cls, value: list[str]) -> list[str]:
        for topic in value:
            problem = topic_filter_error(topic)
            if problem:
                raise ValueError(f"{topic!r}: {problem}")
        return value

    @field_validator("shared_group")
    @classmethod
    def _group_name(cls, value: str | None) -> str | None:
        if value is not None and (not value or any(ch in value for ch in "/+#")):
            raise ValueError(f"{value!r} must be non-empty and contain no '/', '+' or '#'")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> MqttSourceConfig:
        if (self.password is not None or self.password_file is not None) and not self.username:
            raise ValueError("a password needs a username")
        if self.password is not None and self.password_file is not None:
            raise ValueError("set password or password_file, not both")
        if self.reconnect_min_s > self.reconnect_max_s:
            raise ValueError("reconnect_min_s must not exceed reconnect_max_s")
        return self

    def effective_port(self) -> int:
        return self.port if self.port is not None else 8883 if self.tls.enabled else 1883

    def secrets(self) -> list[str]:
        password = self.readable_secret()
        return [password] if password else []


def topic_filter_error(topic: str) -> str | None:
    """Why ``topic`` is not a valid MQTT topic filter, or None (MQTT 5 section 4.7)."""
    if not topic:
        return "a topic filter must not be empty"
    if topic.startswith("$share/"):
        return "give the share group in shared_group, not in the topic"
    if "\x00" in topic or len(topic.encode()) > 65535:
        return "not a valid topic"
    levels = topic.split("/")
    for index, level in enumerate(levels):
        if "#" in level and (level != "#" or index != len(levels) - 1):
            return "'#' must be a whole level and the last one"
        if "+" in level and level != "+":
            return "'+' must be a whole level"
    return None


class BufferConfig(_Section):
    max_size: Annotated[int, Field(ge=1, le=10_000_000)] = 10_000
    spill_ratio: Annotated[float | None, Field(gt=0, le=1)] = 0.9
    """When the buffer is this full the oldest values are saved to the backup CSV instead of being
    overwritten: the writers are stuck or too slow, and a backup row can be recovered while an
    overflowed one cannot. ``null`` disables spilling, leaving FIFO overflow as the only relief."""
    overflow_log_interval_s: Annotated[float, Field(gt=0)] = 10.0


class WriterConfig(_Section):
    batch_size: Annotated[int, Field(ge=1, le=100_000)] = 500
    flush_interval_s: Annotated[float, Field(gt=0, le=3600)] = 0.5
    max_retries: Annotated[int, Field(ge=0, le=100)] = 3
    backoff_s: list[Annotated[float, Field(ge=0, le=3600)]] = Field(default_factory=lambda: [1.0, 2.0, 4.0])
    workers: Annotated[int, Field(ge=1, le=64)] = 2
    probe_interval_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    shutdown_timeout_s: Annotated[float, Field(ge=0, le=3600)] = 10.0

    @model_validator(mode="after")
    def _backoff_covers_retries(self) -> WriterConfig:
        if self.max_retries > 0 and not self.backoff_s:
            raise ValueError("backoff_s must list at least one delay when max_retries > 0")
        return self


class _SinkBase(_Section):
    table: str = "TAG_DATA"
    columns: ColumnSpec = Field(default_factory=ColumnSpec)
    """The target table's column names; each must be a plain SQL identifier."""

    @field_validator("table")
    @classmethod
    def _table_is_identifier(cls, value: str) -> str:
        parts = value.split(".")
        if len(parts) > 2 or not all(IDENTIFIER.match(part) for part in parts):
            raise ValueError(f"{value!r} is not a plain table name (optionally schema.table)")
        return value


class SqliteSinkConfig(_SinkBase):
    type: Literal["sqlite"] = "sqlite"
    path: Path = Path("data/tags.db")
    busy_timeout_s: Annotated[float, Field(gt=0, le=600)] = 5.0

    def target(self) -> str:
        """The database file as an absolute path."""
        return str(self.path.absolute())

    def secrets(self) -> list[str]:
        return []


class _NetworkSinkBase(_SinkBase, _PasswordSection):
    dsn: str | None = None
    host: str | None = None
    user: str | None = None
    pool_size: Annotated[int, Field(ge=1, le=100)] = 5
    connect_timeout_s: Annotated[float, Field(gt=0, le=600)] = 5.0
    call_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    pool_wait_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 5.0
    login_retry_s: Annotated[float, Field(gt=0, le=86400)] = 60.0
    """After the database refuses the credentials, the first login retry waits this long, and each
    further one twice as long as the last (up to ``login_retry_max_s``)."""
    login_retry_max_s: Annotated[float, Field(gt=0, le=86400)] = 1800.0
    max_failed_logins: Annotated[int, Field(ge=0, le=1000)] = 5
    """Refused logins in a row after which the collector stops trying until the password file
    changes (or the service restarts): below Oracle's FAILED_LOGIN_ATTEMPTS (10 by default), so
    the collector never locks its own account. 0 keeps trying every ``login_retry_max_s``."""

    @model_validator(mode="after")
    def _login_retry_ordered(self) -> _NetworkSinkBase:
        if self.login_retry_max_s < self.login_retry_s:
            raise ValueError(
                f"login_retry_max_s ({self.login_retry_max_s}) is less than"
                f" login_retry_s ({self.login_retry_s})"
            )
        return self

    def secrets(self) -> list[str]:
        """Every secret this sink's settings hold: the password and any inside the DSN."""
        return [s for s in [self.readable_secret(), *dsn_secrets(self.dsn)] if s]


def read_password_file(path: Path) -> str:
    """The first line of ``path``, exactly as written (only the line break removed)."""
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    if not path.is_file():
        raise ValueError(f"{path} is not a regular file")
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ValueError(f"{path} is not UTF-8 text") from None
    first = text.splitlines()[0] if text else ""
    if not first:
        raise ValueError(f"{path} is empty: its first line must hold the password")
    return first


class OracleSinkConfig(_NetworkSinkBase):
    type: Literal["oracle"] = "oracle"
    port: Annotated[int, Field(ge=1, le=65535)] = 1521
    service_name: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _credentials_from_dsn(cls, data: Any) -> Any:
        """python-oracledb's ``user/password@connect_string`` becomes user, password and dsn, so
        the password is held (and masked) as one, and the driver gets a plain connect string."""
        if not isinstance(data, dict) or not isinstance(data.get("dsn"), str):
            return data
        user, password, connect = split_oracle_credentials(data["dsn"])
        if user is None and password is None:
            return data
        if password is not None and len(password) > 1 and password[0] == password[-1] == '"':
            password = password[1:-1]  # user/"pa ss@word"@host: quoted as in SQL*Plus
        if (password is not None and (data.get("password") is not None or data.get("password_file"))) or (
            user is not None and data.get("user") not in (None, user)
        ):
            raise ValueError(
                "dsn carries a user/password; give the credentials either in dsn or in"
                " user and password (or password_file), not both"
            )
        data = {**data, "dsn": connect, "user": user}
        if password is not None:
            data["password"] = password
        return data

    @model_validator(mode="after")
    def _reachable(self) -> OracleSinkConfig:
        if not self.dsn and not (self.host and self.service_name):
            raise ValueError("set dsn, or host and service_name (ORACLE_HOST, ORACLE_SERVICE_NAME)")
        if not self.user:
            raise ValueError("user is required (ORACLE_USER)")
        if self.password is None and self.password_file is None:
            raise ValueError("password or password_file is required (ORACLE_PASSWORD)")
        return self

    def connect_string(self) -> str:
        if self.dsn:
            return self.dsn
        return f"{self.host}:{self.port}/{self.service_name}"

    def target(self) -> str:
        """Where this sink writes, safe to show: ``host:port/service`` or the alias."""
        return str(dsn_target(self.connect_string()))


class PostgresSinkConfig(_NetworkSinkBase):
    type: Literal["postgresql"] = "postgresql"
    port: Annotated[int, Field(ge=1, le=65535)] = 5432
    dbname: str | None = None
    application_name: str = "plc-tag-collector"
    """Shown in pg_stat_activity, so a DBA can tell the collector's connections apart."""

    @field_validator("dsn")
    @classmethod
    def _dsn_parses(cls, value: str | None) -> str | None:
        if value:
            # libpq's own parser, so a malformed string fails here naming the key rather than as
            # the driver's traceback at start. Its message may quote the password: masked.
            from psycopg import ProgrammingError
            from psycopg.conninfo import conninfo_to_dict

            try:
                conninfo_to_dict(value)
            except ProgrammingError as exc:
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "cannot be parsed"
                for secret in dsn_secrets(value):
                    reason = reason.replace(secret, SECRET_MASK)
                raise ValueError(f"not a valid connection string: {reason}") from None
        return value

    @model_validator(mode="after")
    def _reachable(self) -> PostgresSinkConfig:
        if not self.dsn and not self.host:
            raise ValueError("set dsn, or host (and dbname, user)")
        return self

    def target(self) -> str:
        """Where this sink writes, safe to show: ``host:port/dbname``."""
        # The separately configured keys win over the DSN's, as they do when connecting.
        shown = dsn_target(self.dsn) if self.dsn else DsnTarget()
        return str(
            DsnTarget(
                address=self.host or shown.address,
                port=self.port if (self.host or "port" in self.model_fields_set) else shown.port,
                namespace=self.dbname or shown.namespace,
            )
        )


SinkConfig = Annotated[SqliteSinkConfig | OracleSinkConfig | PostgresSinkConfig, Field(discriminator="type")]


class BackupConfig(_Section):
    dir: Path = Path("backup")
    fallback_dir: Path | None = None
    max_file_bytes: Annotated[int, Field(ge=4096)] = 64 * 1024 * 1024
    idle_close_s: Annotated[float, Field(gt=0)] = 30.0
    """A backup file left unwritten this long is closed, so the next outage starts a new file and
    a closed file can be replayed while the service runs."""


class IngestConfig(_Section):
    """``POST /api/v1/values`` on the API port (see docs/intake.md)."""

    enabled: bool | None = None
    """Default: on while the API listens on loopback only, or when a token is set."""
    token: SecretStr | None = None
    """Bearer token a client must send; required when the API listens beyond loopback."""
    token_file: Path | None = None
    max_body_bytes: Annotated[int, Field(ge=1024, le=256 * 1024 * 1024)] = 4 * 1024 * 1024

    @field_validator("token_file")
    @classmethod
    def _token_file_usable(cls, value: Path | None) -> Path | None:
        if value is not None:
            read_password_file(value)
        return value

    @model_validator(mode="after")
    def _one_token(self) -> IngestConfig:
        if self.token is not None and self.token_file is not None:
            raise ValueError("set token or token_file, not both")
        if self.token is not None and not self.token.get_secret_value().strip():
            raise ValueError("token must not be empty")
        return self

    def secret(self) -> str | None:
        if self.token is not None:
            return self.token.get_secret_value().strip()
        if self.token_file is not None:
            return read_password_file(self.token_file)
        return None


class WalConfig(_Section):
    """The write-ahead log (docs/reliability.md): the crash record of the values held in memory."""

    durability: Literal["off", "interval", "always"] = "interval"
    """``interval``: each poll batch reaches the operating system before it is accepted (survives a
    killed process) and is fsynced every ``fsync_interval_s``; ``always``: fsynced before it is
    accepted (survives a power cut); ``off``: memory only."""
    dir: Path | None = None
    """Default: ``wal`` beside the SQLite file, or ``data/wal`` for the other databases."""
    fsync_interval_s: Annotated[float, Field(gt=0, le=60)] = 0.2
    segment_bytes: Annotated[int, Field(ge=4096, le=1024**3)] = 8 * 1024 * 1024
    max_bytes: Annotated[int, Field(ge=8192)] = 512 * 1024 * 1024
    """When the log holds this much, new values are accepted but not logged (counted and alerted)
    until released values make room: intake never waits for the disk."""

    @model_validator(mode="after")
    def _cap_holds_segments(self) -> WalConfig:
        if self.max_bytes < 2 * self.segment_bytes:
            raise ValueError(
                f"wal.max_bytes ({self.max_bytes}) must be at least twice wal.segment_bytes"
                f" ({self.segment_bytes})"
            )
        return self


class FilesConfig(_Section):
    """How the service's data files are protected (docs/security.md)."""

    mode: int = 0o600
    """Permission bits of the files the service creates (backup and rejected files, the SQLite
    database); their directories get the same plus search: 0600 -> 0700. Written in octal as a
    string (``"0640"`` lets a group read); never world-writable, always owner read and write."""

    @field_validator("mode", mode="before")
    @classmethod
    def _octal(cls, value: object) -> object:
        if isinstance(value, str):
            if not re.fullmatch(r"0?o?[0-7]{3,4}", value.strip()):
                raise ValueError(f"files.mode must be octal permission bits such as '0600', got {value!r}")
            return int(value.strip().replace("o", ""), 8)
        return value

    @field_validator("mode")
    @classmethod
    def _sensible(cls, value: int) -> int:
        if not 0 <= value <= 0o777:
            raise ValueError(f"files.mode must be octal permission bits such as '0600', got {value}")
        if value & 0o600 != 0o600 or value & 0o002:
            raise ValueError(
                f"files.mode {value:04o} must let the owner read and write and must not let everyone write"
            )
        return value

    @field_serializer("mode")
    def _as_octal(self, value: int) -> str:
        return f"{value:04o}"


class ApiConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9108
    max_connections: Annotated[int, Field(ge=4, le=10_000)] = 64
    """Open API connections at most (lowered at start to fit the open-file limit); at the cap the
    connection idle longest is closed for a new one."""
    allowed_hosts: list[str] = Field(default_factory=list)
    """Names besides loopback addresses and ``localhost`` that a request's Host header may carry
    while the API is bound to loopback (a guard against DNS rebinding)."""
    ingest: IngestConfig = Field(default_factory=IngestConfig)

    def loopback_only(self) -> bool:
        return is_loopback(self.host)

    def ingest_enabled(self) -> bool:
        ingest = self.ingest
        if ingest.enabled is not None:
            return ingest.enabled
        return self.loopback_only() or ingest.secret() is not None

    @model_validator(mode="after")
    def _ingest_guarded(self) -> ApiConfig:
        ingest = self.ingest
        if ingest.enabled and not self.loopback_only() and ingest.token is None and ingest.token_file is None:
            raise ValueError(
                f"ingest.token (or ingest.token_file) is required: the API listens on {self.host},"
                " beyond loopback, and ingest.enabled is true"
            )
        return self


def is_loopback(host: str) -> bool:
    """True when ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Config(_Section):
    source: Annotated[SourceConfig | MqttSourceConfig, Field(discriminator="type")] = Field(
        default_factory=SourceConfig
    )
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    writer: WriterConfig = Field(default_factory=WriterConfig)
    sink: SinkConfig = Field(default_factory=SqliteSinkConfig)
    backup: BackupConfig = Field(default_factory=BackupConfig)
    wal: WalConfig = Field(default_factory=WalConfig)
    files: FilesConfig = Field(default_factory=FilesConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="after")
    def _tags_fill_groups(self) -> Config:
        source = self.source
        if isinstance(source, SourceConfig) and source.tags is not None and source.tags < source.groups:
            raise ValueError(f"source.tags ({source.tags}) is fewer than source.groups ({source.groups})")
        return self

    @model_validator(mode="after")
    def _oracle_batch_fits_batch_errors(self) -> Config:
        if self.sink.type == "oracle" and self.writer.batch_size > MAX_BATCH_ERRORS:
            raise ValueError(
                f"writer.batch_size ({self.writer.batch_size}) exceeds {MAX_BATCH_ERRORS}, the most batch"
                " errors one Oracle executemany can report (python-oracledb DPY-4029)"
            )
        return self

    @model_validator(mode="after")
    def _workers_fit_pool(self) -> Config:
        pool = getattr(self.sink, "pool_size", None)
        if pool is not None and self.writer.workers > pool:
            raise ValueError(
                f"writer.workers ({self.writer.workers}) exceeds sink.pool_size ({pool}):"
                " a worker would wait for a connection"
            )
        return self

    @property
    def wal_dir(self) -> Path:
        """Where the write-ahead log lives: ``wal.dir``, else beside the SQLite file, else ``data/wal``."""
        if self.wal.dir is not None:
            return self.wal.dir
        if isinstance(self.sink, SqliteSinkConfig):
            return Path(self.sink.path).parent / "wal"
        return Path("data/wal")

    def masked(self) -> dict[str, Any]:
        """The effective configuration as plain data, every secret replaced by a mask."""
        data = self.model_dump(mode="json")
        sink = data["sink"]
        if sink.get("password") is not None:
            sink["password"] = SECRET_MASK
        if sink.get("dsn"):
            sink["dsn"] = redact_dsn(sink["dsn"])
        for holder, key in ((data["source"], "password"), (data["api"]["ingest"], "token")):
            if holder.get(key) is not None:
                holder[key] = SECRET_MASK
        return data

    def secrets(self) -> list[str]:
        """Every secret value the configuration holds, for a :class:`~collector.redaction.Redactor`."""
        source = self.source.secrets() if isinstance(self.source, MqttSourceConfig) else []
        try:
            token = self.api.ingest.secret()
        except ValueError:
            token = None
        return [*self.sink.secrets(), *source, *([token] if token else [])]


# The seed's variable names, mapped to the Oracle sink's keys.
ORACLE_ENV = {
    "ORACLE_DSN": "dsn",
    "ORACLE_HOST": "host",
    "ORACLE_PORT": "port",
    "ORACLE_SERVICE_NAME": "service_name",
    "ORACLE_USER": "user",
    "ORACLE_PASSWORD": "password",
    "ORACLE_PASSWORD_FILE": "password_file",
}


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    """A validated configuration and what an operator should hear about how it was read."""

    config: Config
    warnings: tuple[str, ...] = ()
    """Things that work but deserve attention (a password file others can read)."""
    notes: tuple[str, ...] = ()
    """Choices made for the operator (the Oracle sink selected by an ``ORACLE_*`` variable)."""


@dataclass(frozen=True, slots=True)
class _Variable:
    name: str
    value: str
    origin: str


@dataclass
class _Origins:
    """Where each key's value came from, so an error can say which file or variable to fix."""

    by_key: dict[tuple[str, ...], str] = field(default_factory=dict)

    def record_tree(self, data: Any, origin: str, path: tuple[str, ...] = ()) -> None:
        if isinstance(data, dict) and data:
            for key, value in data.items():
                self.record_tree(value, origin, (*path, str(key)))
        elif path:
            self.by_key[path] = origin

    def of(self, key: tuple[str, ...]) -> list[str]:
        """The origin of ``key``: its own, an enclosing section's, or those of the keys inside it."""
        for length in range(len(key), 0, -1):
            if key[:length] in self.by_key:
                return [self.by_key[key[:length]]]
        inside = [origin for path, origin in self.by_key.items() if path[: len(key)] == key]
        return list(dict.fromkeys(inside))


def load_config(
    path: Path | str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    env_file: Path | str | None = ".env",
    require_env_file: bool = False,
) -> Config:
    """Build the configuration; raise :class:`ConfigError` naming every bad key."""
    return read_config(path, environ=environ, env_file=env_file, require_env_file=require_env_file).config


def read_config(
    path: Path | str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    env_file: Path | str | None = ".env",
    require_env_file: bool = False,
) -> LoadedConfig:
    """As :func:`load_config`, with the warnings to show. ``env_file`` is read when it exists;
    with ``require_env_file`` a missing one is an error (it was named on purpose)."""
    variables = _variables(os.environ if environ is None else environ, env_file, require_env_file)
    origins = _Origins()
    problems: list[str] = []
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(Path(path))
        origins.record_tree(data, str(path))
    _apply_prefixed_env(data, variables, origins, problems)
    oracle_switch = _apply_oracle_env(data, variables, origins)
    sink = data.get("sink")
    if isinstance(sink, dict) and "type" not in sink:
        sink["type"] = "sqlite"  # the embedded default, as when the section is absent
    source = data.get("source")
    if isinstance(source, dict) and "type" not in source:
        source["type"] = "simulator"
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as exc:
        problems.extend(_describe(exc, origins))
    if problems or config is None:
        lines = ["invalid configuration:", *(f"  {problem}" for problem in problems)]
        if oracle_switch and any(problem.startswith("sink") for problem in problems):
            lines.append(f"  note: {oracle_switch}")
        raise ConfigError("\n".join(lines))
    notes = (oracle_switch,) if oracle_switch else ()
    return LoadedConfig(config, tuple(_file_warnings(config, origins)), notes)


def _variables(
    environ: Mapping[str, str], env_file: Path | str | None, require_env_file: bool
) -> dict[str, _Variable]:
    variables: dict[str, _Variable] = {}
    if env_file is not None:
        dotenv = Path(env_file)
        if dotenv.is_file():
            shown = dotenv.absolute()
            for name, value in dotenv_values(dotenv).items():
                if value is not None:
                    variables[name] = _Variable(name, value, f"{name} in {shown}")
        elif require_env_file:
            reason = "is not a file" if dotenv.exists() else "does not exist"
            raise ConfigError(f"--env-file {env_file} {reason}")
    for name, value in environ.items():
        variables[name] = _Variable(name, value, f"environment variable {name}")
    return variables


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read configuration file {path}: {exc.strerror}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of sections")
    return loaded


def _apply_prefixed_env(
    data: dict[str, Any], variables: Mapping[str, _Variable], origins: _Origins, problems: list[str]
) -> None:
    for name, variable in sorted(variables.items()):
        if not name.upper().startswith(ENV_PREFIX) or name in NON_SETTING_VARIABLES:
            continue
        problem = _misnamed(name)
        if problem:
            problems.append(f"{variable.origin}: {problem}")
            continue
        path = tuple(part.lower() for part in name[len(ENV_PREFIX) :].split(ENV_NESTING))
        node = data
        for depth, part in enumerate(path[:-1]):
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                problems.append(f"{variable.origin}: {'.'.join(path[: depth + 1])} is not a section")
                break
            node = child
        else:
            node[path[-1]] = variable.value if _is_text_key(path) else _env_scalar(variable.value)
            origins.by_key[path] = variable.origin


def _misnamed(name: str) -> str | None:
    """Why ``name`` cannot be a setting's variable, or None if it can."""
    if name != name.upper():
        return f"environment variable names are upper case: {name.upper()}?"
    rest = name[len(ENV_PREFIX) :]
    if ENV_NESTING not in rest:
        section = next((s for s in Config.model_fields if rest.lower().startswith(f"{s}_")), None)
        hint = (
            f": {ENV_PREFIX}{rest[: len(section)]}{ENV_NESTING}{rest[len(section) + 1 :]}?" if section else ""
        )
        return f"not a setting; a section and its key are joined by two underscores{hint}"
    if not all(rest.split(ENV_NESTING)):
        return "empty section or key in the variable name"
    return None


_TEXT_TYPES: tuple[Any, ...] = (str, SecretStr, Path)


def _is_text_key(path: tuple[str, ...]) -> bool:
    """Whether the key takes text: its value from the environment is then kept exactly as given
    (a password ``123456``, ``yes``, ``null`` or ``#x`` is that password)."""
    models: list[type[BaseModel]] = [Config]
    for depth, part in enumerate(path):
        annotations = [m.model_fields[part].annotation for m in models if part in m.model_fields]
        if not annotations:
            return True  # an unknown key: validation names it; its text is kept for the message
        if depth == len(path) - 1:
            return all(_takes_text(annotation) for annotation in annotations)
        models = [m for annotation in annotations for m in _models_in(annotation)]
    return False


def _members(annotation: Any) -> list[Any]:
    if get_origin(annotation) is Annotated:
        return _members(get_args(annotation)[0])
    if get_origin(annotation) in (Union, types.UnionType):
        return [m for arg in get_args(annotation) for m in _members(arg) if m is not type(None)]
    return [annotation]


def _takes_text(annotation: Any) -> bool:
    members = _members(annotation)
    return bool(members) and all(
        member in _TEXT_TYPES
        or (get_origin(member) is Literal and all(isinstance(v, str) for v in get_args(member)))
        for member in members
    )


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    return [m for m in _members(annotation) if isinstance(m, type) and issubclass(m, BaseModel)]


def _env_scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        return raw


def _apply_oracle_env(data: dict[str, Any], variables: Mapping[str, _Variable], origins: _Origins) -> str:
    """Lay the seed's ``ORACLE_*`` variables over the sink; if they select the Oracle sink, say
    which variables did."""
    given = {key: variables[name] for name, key in ORACLE_ENV.items() if variables.get(name, None)}
    given = {key: variable for key, variable in given.items() if variable.value}
    if not given:
        return ""
    sink = data.setdefault("sink", {})
    if not isinstance(sink, dict):
        return ""
    switch = ""
    if "type" not in sink:
        sink["type"] = "oracle"
        cause = next(iter(given.values()))  # ORACLE_ENV's order: ORACLE_DSN, then ORACLE_HOST, ...
        switch = (
            f"the sink is Oracle because {cause.origin} is set and no sink type is configured"
            " (set sink.type or COLLECTOR_SINK__TYPE to choose another)"
        )
        origins.by_key[("sink", "type")] = cause.origin
    if sink["type"] != "oracle":
        return ""
    # The environment overrides the file; a COLLECTOR_SINK__<KEY> variable, being the more specific
    # name, overrides the seed's ORACLE_* one.
    prefixed = f"{ENV_PREFIX}SINK{ENV_NESTING}"
    explicit = {name[len(prefixed) :].lower() for name in variables if name.startswith(prefixed)}
    for key, variable in given.items():
        if key not in explicit:
            sink[key] = variable.value
            origins.by_key[("sink", key)] = variable.origin
    return switch


def _file_warnings(config: Config, origins: _Origins) -> list[str]:
    password_file = getattr(config.sink, "password_file", None)
    if password_file is None:
        return []
    mode = stat.S_IMODE(password_file.stat().st_mode)
    if not mode & stat.S_IROTH:
        return []
    where = "; ".join(origins.of(("sink", "password_file")))
    return [
        f"sink.password_file: {password_file} can be read by every user of this machine"
        f" (mode {mode:04o}); chmod 600 it [{where}]"
    ]


_SECRET_KEYS = {"password", "dsn", "token"}


def _describe(exc: ValidationError, origins: _Origins) -> list[str]:
    lines = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, InvalidColumnName):
            loc.append(cause.field)  # the column type checks its names itself; name the one at fault
        # Drop the union tag pydantic inserts ("sink.oracle.host" -> "sink.host").
        if len(loc) > 1 and loc[0] == "sink" and loc[1] in {"sqlite", "oracle", "postgresql"}:
            loc.pop(1)
        if len(loc) > 1 and loc[0] == "source" and loc[1] in {"simulator", "external", "mqtt"}:
            loc.pop(1)
        key = ".".join(loc) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] in {"extra_forbidden", "unexpected_keyword_argument"}:
            message = "unknown key"
        shown = error.get("input")
        suffix = ""
        plain = isinstance(shown, str | int | float) and not _SECRET_KEYS & set(loc)
        if plain and error["type"] not in {"extra_forbidden", "unexpected_keyword_argument", "missing"}:
            suffix = f" (got {shown!r})"
        elif isinstance(shown, str) and loc and loc[-1] == "dsn":
            suffix = f" (got {redact_dsn(shown)!r})"
        where = origins.of(tuple(loc))
        source = f" [{'; '.join(where)}]" if where else ""
        lines.append(f"{key}: {message}{suffix}{source}")
    return lines
