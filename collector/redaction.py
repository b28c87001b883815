"""Secrets kept out of everything the service prints: ``check-config``, log lines, error messages,
span attributes and the status API.

- :func:`redact_dsn` masks the password in a connect string of any form the drivers accept:
  python-oracledb's ``user/password@connect_string`` (Easy Connect with ``?`` options, a
  connect descriptor, a ``tnsnames.ora`` alias), libpq's URI and ``key=value`` conninfo, and URLs
  with ``user:password@`` such as an OTLP endpoint.
- :class:`Redactor` masks free text, such as a driver's error quoting the connect string it could
  not parse, using the same patterns and the secrets the configuration is known to hold.
- :func:`dsn_target` gives the parts of a connect string that are safe to show: host, port and
  database or service name.

Masking errs toward hiding: when a malformed string could be read two ways, the wider span is masked.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from urllib.parse import unquote

MASK = "********"

MIN_SECRET_LENGTH = 4
"""Known secrets shorter than this are not searched for in free text: every ``pw`` in a log line
would be masked. The patterns below still hide them where they sit in a connect string."""

# Keys whose value is a secret: libpq's password and sslpassword, Oracle's wallet_password, ...
_SECRET_KEY = r"[A-Za-z_.\-]*(?:password|passwd|pwd|secret|token)[A-Za-z_.\-]*"
# In a URL query or Easy Connect options: ?password=x&...
_QUERY_SECRET = re.compile(rf"(?i)([?&]{_SECRET_KEY}=)([^&#\s\"']*)")
# In an Oracle connect descriptor: (WALLET_PASSWORD=x)
_DESCRIPTOR_SECRET = re.compile(rf"(?i)(\(\s*{_SECRET_KEY}\s*=\s*)([^)]*)")
# In libpq conninfo: password=x or password = 'x \' y'
_KEYWORD_SECRET = re.compile(rf"(?i)((?<![?&(\w]){_SECRET_KEY}\s*=\s*)('(?:[^'\\]|\\.)*'?|[^\s'\"]+)")
# A URL with credentials inside free text: scheme://user:secret@host (up to the token's last @).
_URL_USERINFO = re.compile(r"([A-Za-z][\w+.\-]*://[^\s:/@\"']*:)[^\s\"']*@")
# python-oracledb's user/secret@connect_string inside free text.
_ORACLE_CREDENTIALS = re.compile(r"(?<![\w/.\-])([\w$#.\-]+/)[^\s\"']*@(?=[\w(/\[])")
_QUOTED = re.compile(r"\"([^\"\n]*)\"|'([^'\n]*)'")
_SCHEME = re.compile(r"^\s*[A-Za-z][\w+.\-]*://")


def redact_dsn(dsn: str) -> str:
    """``dsn`` with every password in it replaced by :data:`MASK`; the rest kept for a reader."""
    return _redact_dsn(dsn, [])


def dsn_secrets(dsn: str | None) -> list[str]:
    """The secrets a connect string carries, as written and as a driver decodes them (quotes
    removed, percent-escapes decoded), so that a :class:`Redactor` finds them in driver messages."""
    found: list[str] = []
    if dsn:
        _redact_dsn(dsn, found)
    forms: list[str] = []
    for secret in found:
        forms.append(secret)
        if len(secret) > 1 and secret[0] == secret[-1] and secret[0] in "'\"":
            forms.append(re.sub(r"\\(.)", r"\1", secret[1:-1]))
        forms.append(unquote(secret))
    return list(dict.fromkeys(form for form in forms if form))


def _redact_dsn(dsn: str, found: list[str]) -> str:
    text = _mask_keywords(dsn, found)
    scheme = _SCHEME.match(text)
    first_at = text.find("@")
    if scheme and (first_at < 0 or first_at > scheme.end()):
        # scheme://user:secret@host...: the user is kept, all up to the last @ is hidden.
        head, rest = text[: scheme.end()], text[scheme.end() :]
        userinfo, at, hostpart = rest.rpartition("@")
        if at and ":" in userinfo:
            user, _, secret = userinfo.partition(":")
            found.append(secret)
            return f"{head}{user}:{MASK}@{hostpart}"
        return text
    if first_at >= 0 and not text.lstrip().startswith("("):
        # user/secret@connect_string; python-oracledb splits at the last @.
        credentials, _, connect = text.rpartition("@")
        if "/" in credentials:
            user, _, secret = credentials.partition("/")
            found.append(secret)
            return f"{user}/{MASK}@{connect}"
    return text


def _mask_keywords(text: str, found: list[str]) -> str:
    def mask(match: re.Match[str]) -> str:
        found.append(match.group(2))
        return match.group(1) + MASK

    for pattern in (_QUERY_SECRET, _DESCRIPTOR_SECRET, _KEYWORD_SECRET):
        text = pattern.sub(mask, text)
    return text


@dataclass(frozen=True, slots=True)
class DsnTarget:
    """The parts of a connect string that are safe to show: no user, no password."""

    address: str | None = None
    port: int | None = None
    namespace: str | None = None
    """The PostgreSQL database or the Oracle service name (``db.namespace`` in a span)."""
    alias: str | None = None
    """A ``tnsnames.ora`` alias, when the connect string is one."""

    def __str__(self) -> str:
        if self.alias:
            return self.alias
        text = self.address or ""
        if self.port is not None:
            text += f":{self.port}"
        if self.namespace:
            text += f"/{self.namespace}"
        return text


def dsn_target(dsn: str) -> DsnTarget:
    """Host, port and database or service of a connect string of any supported form."""
    text = dsn.strip()
    if re.match(r"(?i)^postgres(?:ql)?://", text):
        return _uri_target(text)
    if text.startswith("(") or ("@" in text and text.rpartition("@")[2].lstrip().startswith("(")):
        return _descriptor_target(text)
    if re.match(r"^\w+\s*=", text):
        return _conninfo_target(text)
    return _easy_connect_target(text)


def _port(text: str | None) -> int | None:
    return int(text) if text and text.isdigit() else None


def _uri_target(text: str) -> DsnTarget:
    rest = text.split("://", 1)[1]
    authority_end = len(rest)
    # The authority ends at the path or query that follows the (last) credentials.
    after_credentials = rest.rfind("@") + 1
    for mark in "/?":
        found = rest.find(mark, after_credentials)
        if found >= 0:
            authority_end = min(authority_end, found)
    hosts = rest[after_credentials:authority_end]
    path, _, query = rest[authority_end:].partition("?")
    pairs = (item.partition("=") for item in query.split("&") if item)
    params = {unquote(key): unquote(value) for key, _, value in pairs}
    address, port = hosts, None
    if "," not in hosts:
        match = re.match(r"^(\[[^\]]*\]|[^:]*)(?::(\d+))?$", hosts)
        if match:
            address, port = match.group(1), _port(match.group(2))
    return DsnTarget(
        address=unquote(address) or params.get("host"),
        port=port or _port(params.get("port")),
        namespace=unquote(path.lstrip("/")) or params.get("dbname"),
    )


def _conninfo_target(text: str) -> DsnTarget:
    pairs = {
        key.lower(): re.sub(r"\\(.)", r"\1", value[1:-1]) if value.startswith("'") else value
        for key, value in re.findall(r"(\w+)\s*=\s*('(?:[^'\\]|\\.)*'|\S+)", text)
    }
    return DsnTarget(
        address=pairs.get("host") or pairs.get("hostaddr"),
        port=_port(pairs.get("port")),
        namespace=pairs.get("dbname"),
    )


def _descriptor_target(text: str) -> DsnTarget:
    def first(key: str) -> str | None:
        match = re.search(rf"(?i)\(\s*{key}\s*=\s*([^)\s]+)\s*\)", text)
        return match.group(1) if match else None

    return DsnTarget(
        address=first("HOST"), port=_port(first("PORT")), namespace=first("SERVICE_NAME") or first("SID")
    )


def _easy_connect_target(text: str) -> DsnTarget:
    if "@" in text:
        text = text.rpartition("@")[2]  # python-oracledb's user/password@ prefix
    text = re.sub(r"^\w+://", "", text).removeprefix("//")
    text = text.split("?", 1)[0]
    match = re.match(r"^(\[[^\]]*\]|[^:/\s]+)(?::(\d+))?(?:/([^:/\s]+))?", text)
    if match is None:
        return DsnTarget()
    host, port, service = match.groups()
    if port is None and service is None and "." not in host:
        return DsnTarget(alias=host)  # a tnsnames.ora alias (or a bare host name: it reads the same)
    return DsnTarget(address=host, port=_port(port), namespace=service)


def split_oracle_credentials(dsn: str) -> tuple[str | None, str | None, str]:
    """``user/password@connect_string`` as python-oracledb reads it: user, password and the
    connect string. A DSN without credentials comes back whole with no user or password."""
    text = dsn.strip()
    if "@" not in text or _SCHEME.match(text.partition("@")[0] + "@"):
        return None, None, dsn
    credentials, _, connect = text.rpartition("@")
    if "(" in credentials or "?" in credentials.partition("/")[0]:
        return None, None, dsn  # an @ inside a descriptor or an option, not credentials
    user, slash, password = credentials.partition("/")
    return user or None, password if slash else None, connect


OTLP_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
OTLP_HEADER_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "OTEL_EXPORTER_OTLP_HEADERS")


def otlp_secrets(environ: Mapping[str, str]) -> list[str]:
    """The secrets in the OpenTelemetry exporter's settings: endpoint passwords and header values
    (``Authorization=Basic ...``, API keys)."""
    found: list[str] = []
    for name in OTLP_VARIABLES:
        found.extend(dsn_secrets(environ.get(name)))
    for name in OTLP_HEADER_VARIABLES:
        for item in environ.get(name, "").split(","):
            value = item.partition("=")[2].strip()
            if value:
                found.extend([value, unquote(value)])
    return list(dict.fromkeys(found))


class Redactor:
    """Masks secrets in free text: the patterns of :func:`redact_dsn` wherever they appear, and
    every known secret value (the configured password, the one inside a DSN), as written and
    percent-encoded."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET_LENGTH:
                forms.update({secret, _percent_encoded(secret)})
        # Longest first, so a secret that contains another is masked whole.
        self._secrets = sorted(forms, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        text = _QUOTED.sub(_redact_quoted, text)
        text = _mask_keywords(text, [])
        text = _URL_USERINFO.sub(rf"\g<1>{MASK}@", text)
        return _ORACLE_CREDENTIALS.sub(rf"\g<1>{MASK}@", text)


def _redact_quoted(match: re.Match[str]) -> str:
    # A driver quotes the connect string it could not parse: "user/pass word@host/svc".
    inner = match.group(1) if match.group(1) is not None else match.group(2)
    quote = match.group(0)[0]
    return f"{quote}{redact_dsn(inner)}{quote}"


def _percent_encoded(secret: str) -> str:
    from urllib.parse import quote

    return quote(secret, safe="")


def redact_text(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with connect-string passwords and the given secrets masked."""
    return Redactor(secrets)(text)
