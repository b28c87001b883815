"""The admin page served at ``/``: the status at a glance, for an operator at the collector's own
machine or on a phone, without Grafana and without internet access.

The page is one static file (``admin.html``) with its style and script inline and no external
asset; its script fetches ``api/v1/status`` and refreshes itself (every 5 s, ``?refresh=N`` to
change it). It is served with a Content-Security-Policy that allows exactly its own inline script
and style (by hash) and requests to this server, nothing else.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from importlib import resources


@dataclass(frozen=True, slots=True)
class Page:
    body: bytes
    content_security_policy: str


def _hash(source: str) -> str:
    digest = hashlib.sha256(source.encode()).digest()
    return f"'sha256-{base64.b64encode(digest).decode()}'"


def admin_page() -> Page:
    """The packaged page and the policy that admits its inline script and style."""
    text = resources.files("collector.api").joinpath("admin.html").read_text(encoding="utf-8")
    scripts = " ".join(_hash(s) for s in re.findall(r"<script>(.*?)</script>", text, flags=re.DOTALL))
    styles = " ".join(_hash(s) for s in re.findall(r"<style>(.*?)</style>", text, flags=re.DOTALL))
    policy = (
        f"default-src 'none'; script-src {scripts}; style-src {styles}; connect-src 'self';"
        " img-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    )
    return Page(text.encode(), policy)
