"""Configuration: one validated object built from defaults, a YAML file, ``.env`` and the environment.

Precedence, lowest first: the defaults below, the YAML file, a ``.env`` file, the process
environment. Section keys are overridden with ``COLLECTOR_<SECTION>__<KEY>`` (for example
``COLLECTOR_WRITER__BATCH_SIZE=1000``; values are read as YAML scalars, so ``[1, 2, 4]`` is a list).
The seed's ``ORACLE_HOST``, ``ORACLE_PORT``, ``ORACLE_SERVICE_NAME``, ``ORACLE_USER`` and
``ORACLE_PASSWORD`` (and ``ORACLE_DSN``, ``ORACLE_PASSWORD_FILE``) set the Oracle sink, and select it
when no sink type is configured. Every problem is reported at start with the key that has it.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from dotenv import dotenv_values
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from collector.sinks.base import IDENTIFIER, ColumnSpec, InvalidColumnName

ENV_PREFIX = "COLLECTOR_"
ENV_NESTING = "__"
SECRET_MASK = "********"


class ConfigError(ValueError):
    """The configuration cannot be used; the message names every key at fault."""


class _Section(BaseModel):
    # Unknown keys are errors: a misspelt key silently ignored is a setting silently lost.
    model_config = ConfigDict(extra="forbid", frozen=True)


class SourceConfig(_Section):
    """Where values come from: the built-in simulator, or a DataQueue the host application gives."""

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


class _NetworkSinkBase(_SinkBase):
    dsn: str | None = None
    host: str | None = None
    user: str | None = None
    password: SecretStr | None = None
    password_file: Path | None = None
    pool_size: Annotated[int, Field(ge=1, le=100)] = 5
    connect_timeout_s: Annotated[float, Field(gt=0, le=600)] = 5.0
    call_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 10.0
    pool_wait_timeout_s: Annotated[float, Field(gt=0, le=3600)] = 5.0

    @field_validator("password_file")
    @classmethod
    def _password_file_readable(cls, value: Path | None) -> Path | None:
        if value is not None and not value.is_file():
            raise ValueError(f"{value} is not a readable file")
        return value

    def secret(self) -> str | None:
        """The password from ``password`` or the first line of ``password_file``."""
        if self.password is not None:
            return self.password.get_secret_value()
        if self.password_file is not None:
            return self.password_file.read_text(encoding="utf-8").splitlines()[0].strip()
        return None


class OracleSinkConfig(_NetworkSinkBase):
    type: Literal["oracle"] = "oracle"
    port: Annotated[int, Field(ge=1, le=65535)] = 1521
    service_name: str | None = None

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


class PostgresSinkConfig(_NetworkSinkBase):
    type: Literal["postgresql"] = "postgresql"
    port: Annotated[int, Field(ge=1, le=65535)] = 5432
    dbname: str | None = None
    application_name: str = "plc-tag-collector"
    """Shown in pg_stat_activity, so a DBA can tell the collector's connections apart."""

    @model_validator(mode="after")
    def _reachable(self) -> PostgresSinkConfig:
        if not self.dsn and not self.host:
            raise ValueError("set dsn, or host (and dbname, user)")
        return self


SinkConfig = Annotated[SqliteSinkConfig | OracleSinkConfig | PostgresSinkConfig, Field(discriminator="type")]


class BackupConfig(_Section):
    dir: Path = Path("backup")
    fallback_dir: Path | None = None
    max_file_bytes: Annotated[int, Field(ge=4096)] = 64 * 1024 * 1024
    idle_close_s: Annotated[float, Field(gt=0)] = 30.0
    """A backup file left unwritten this long is closed, so the next outage starts a new file and
    a closed file can be replayed while the service runs."""


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


class ApiConfig(_Section):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: Annotated[int, Field(ge=0, le=65535)] = 9108


class LoggingConfig(_Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


class Config(_Section):
    source: SourceConfig = Field(default_factory=SourceConfig)
    buffer: BufferConfig = Field(default_factory=BufferConfig)
    writer: WriterConfig = Field(default_factory=WriterConfig)
    sink: SinkConfig = Field(default_factory=SqliteSinkConfig)
    backup: BackupConfig = Field(default_factory=BackupConfig)
    wal: WalConfig = Field(default_factory=WalConfig)
    api: ApiConfig = Field(default_factory=ApiConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)

    @model_validator(mode="after")
    def _tags_fill_groups(self) -> Config:
        source = self.source
        if source.tags is not None and source.tags < source.groups:
            raise ValueError(f"source.tags ({source.tags}) is fewer than source.groups ({source.groups})")
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
            sink["dsn"] = mask_dsn(sink["dsn"])
        return data


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


def mask_dsn(dsn: str) -> str:
    """Hide a password embedded in a URL-style DSN (``scheme://user:secret@host``) or a
    ``password=...`` keyword."""
    dsn = re.sub(r"(://[^:/@]*:)[^@]*@", rf"\g<1>{SECRET_MASK}@", dsn)
    return re.sub(r"(password\s*=\s*)\S+", rf"\g<1>{SECRET_MASK}", dsn, flags=re.IGNORECASE)


def load_config(
    path: Path | str | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    env_file: Path | str | None = ".env",
) -> Config:
    """Build the configuration; raise :class:`ConfigError` naming every bad key."""
    env = _environment(environ, env_file)
    data: dict[str, Any] = {}
    if path is not None:
        data = _read_yaml(Path(path))
    _apply_prefixed_env(data, env)
    _apply_oracle_env(data, env)
    sink = data.get("sink")
    if isinstance(sink, dict) and "type" not in sink:
        sink["type"] = "sqlite"  # the embedded default, as when the section is absent
    try:
        return Config.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_describe(exc, path)) from None


def _environment(environ: Mapping[str, str] | None, env_file: Path | str | None) -> dict[str, str]:
    env: dict[str, str] = {}
    if env_file is not None and Path(env_file).is_file():
        env.update({k: v for k, v in dotenv_values(env_file).items() if v is not None})
    env.update(os.environ if environ is None else environ)
    return env


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


def _apply_prefixed_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    for name, raw in sorted(env.items()):
        if not name.startswith(ENV_PREFIX) or ENV_NESTING not in name:
            continue
        path = [part.lower() for part in name[len(ENV_PREFIX) :].split(ENV_NESTING)]
        if not all(path):
            raise ConfigError(f"{name}: empty key in environment variable name")
        node = data
        for part in path[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"{name}: {part} is not a section")
            node = child
        node[path[-1]] = _env_scalar(raw)


def _env_scalar(raw: str) -> Any:
    try:
        return yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        return raw


def _apply_oracle_env(data: dict[str, Any], env: Mapping[str, str]) -> None:
    given = {key: env[name] for name, key in ORACLE_ENV.items() if env.get(name)}
    if not given:
        return
    sink = data.setdefault("sink", {})
    if not isinstance(sink, dict):
        return
    sink.setdefault("type", "oracle")
    if sink["type"] != "oracle":
        return
    # The environment overrides the file; a COLLECTOR_SINK__<KEY> variable, being the more specific
    # name, overrides the seed's ORACLE_* one.
    prefixed = f"{ENV_PREFIX}SINK{ENV_NESTING}"
    explicit = {name[len(prefixed) :].lower() for name in env if name.startswith(prefixed)}
    for key, value in given.items():
        if key not in explicit:
            sink[key] = value


def _describe(exc: ValidationError, path: Path | str | None) -> str:
    where = f" in {path}" if path else ""
    lines = [f"invalid configuration{where}:"]
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        cause = error.get("ctx", {}).get("error")
        if isinstance(cause, InvalidColumnName):
            loc.append(cause.field)  # the column type checks its names itself; name the one at fault
        # Drop the union tag pydantic inserts ("sink.oracle.host" -> "sink.host").
        if len(loc) > 1 and loc[0] == "sink" and loc[1] in {"sqlite", "oracle", "postgresql"}:
            loc.pop(1)
        key = ".".join(loc) or "(top level)"
        message = error["msg"].removeprefix("Value error, ")
        if error["type"] in {"extra_forbidden", "unexpected_keyword_argument"}:
            message = "unknown key"
        shown = error.get("input")
        suffix = ""
        plain = isinstance(shown, str | int | float) and "password" not in key
        if plain and error["type"] not in {"extra_forbidden", "unexpected_keyword_argument", "missing"}:
            suffix = f" (got {shown!r})"
        lines.append(f"  {key}: {message}{suffix}")
    return "\n".join(lines)
