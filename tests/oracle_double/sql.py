"""Recognising the statements the double understands: the sink's INSERT, the data-dictionary
query, the key lookup's SELECT, and the DDL the collector prints. It is not a SQL parser."""

from __future__ import annotations

import re
from collections.abc import Iterable

NAME = r'(?:"[^"]+"|[A-Za-z_][\w$#]*)'
INSERT = re.compile(
    rf"^\s*INSERT\s+INTO\s+(?:(?P<owner>{NAME})\.)?(?P<table>{NAME})\s*"
    r"\((?P<columns>[^)]*)\)\s*VALUES\s*\((?P<binds>[^)]*)\)\s*$",
    re.IGNORECASE | re.DOTALL,
)
KEY_SELECT = re.compile(
    rf"^\s*SELECT\s+(?P<first>{NAME})\s*,\s*(?P<second>{NAME})\s+FROM\s+(?:(?P<owner>{NAME})\.)?"
    rf"(?P<table>{NAME})\s+WHERE\s*\(\s*(?P<left>{NAME})\s*,\s*(?P<right>{NAME})\s*\)\s*IN\s*"
    r"\((?P<pairs>.*)\)\s*$",
    re.IGNORECASE | re.DOTALL,
)
CONTEXT_SELECT = re.compile(r"^\s*SELECT\s+(?P<items>SYS_CONTEXT\s*\(.*?)\s+FROM\s+DUAL\s*$", re.I | re.S)
USERENV_ITEM = re.compile(r"SYS_CONTEXT\s*\(\s*'USERENV'\s*,\s*'(\w+)'\s*\)", re.I)
DICTIONARY = re.compile(
    r"^\s*SELECT\s+(?P<select>.+?)\s+FROM\s+(?P<view>user_tab_columns|all_tab_columns)\b.*$",
    re.IGNORECASE | re.DOTALL,
)


def ident(text: str) -> str:
    text = text.strip()
    if text.startswith('"') and text.endswith('"'):
        return text[1:-1]
    return text.upper()


def split_top(text: str) -> list[str]:
    """Split on commas that are not inside parentheses or quotes."""
    parts: list[str] = []
    depth = 0
    quote: str | None = None
    current: list[str] = []
    for char in text:
        if quote:
            current.append(char)
            if char == quote:
                quote = None
            continue
        if char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if "".join(current).strip():
        parts.append("".join(current).strip())
    return parts


def statements(script: str) -> Iterable[str]:
    lines = [line for line in script.splitlines() if not line.strip().startswith("--")]
    for statement in "\n".join(lines).split(";"):
        if statement.strip():
            yield statement.strip()


CREATE_TABLE = re.compile(
    rf"^CREATE\s+TABLE\s+(?:(?P<owner>{NAME})\.)?(?P<table>{NAME})\s*\((?P<body>.*)\)\s*$",
    re.IGNORECASE | re.DOTALL,
)
CREATE_INDEX = re.compile(
    rf"^CREATE\s+INDEX\s+(?:(?P<iowner>{NAME})\.)?(?P<index>{NAME})\s+ON\s+"
    rf"(?:(?P<owner>{NAME})\.)?(?P<table>{NAME})\s*\((?P<columns>[^)]*)\)\s*$",
    re.IGNORECASE | re.DOTALL,
)
DROP_TABLE = re.compile(rf"^DROP\s+TABLE\s+(?:(?P<owner>{NAME})\.)?(?P<table>{NAME})(\s+PURGE)?\s*$", re.I)
COLUMN = re.compile(
    rf"^(?P<name>{NAME})\s+(?P<type>VARCHAR2|NVARCHAR2|CHAR|NCHAR|NUMBER|FLOAT|DATE|TIMESTAMP)"
    r"(?:\s*\((?P<args>[^)]*)\))?(?P<zone>\s+WITH(?:\s+LOCAL)?\s+TIME\s+ZONE)?"
    r"(?:\s+DEFAULT\s+(?P<default>'[^']*'|\S+))?(?P<notnull>\s+NOT\s+NULL)?\s*$",
    re.IGNORECASE,
)
PRIMARY_KEY = re.compile(rf"^CONSTRAINT\s+(?P<name>{NAME})\s+PRIMARY\s+KEY\s*\((?P<columns>[^)]*)\)$", re.I)
CHECK_IN = re.compile(
    rf"^CONSTRAINT\s+(?P<name>{NAME})\s+CHECK\s*\(\s*(?P<column>{NAME})\s+IN\s*\((?P<values>[^)]*)\)\s*\)$",
    re.I,
)


def service_of(dsn: str) -> str | None:
    match = re.match(r"^(?:\w+://)?[^/]*/([^?]+)", dsn.strip())
    return match.group(1) if match else None


def host_port_of(dsn: str) -> tuple[str, int]:
    match = re.match(r"^(?:\w+://)?([^:/]+)(?::(\d+))?", dsn.strip())
    if match is None:
        return "localhost", 1521
    return match.group(1), int(match.group(2) or 1521)
