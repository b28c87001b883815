"""The runbook (``docs/runbook.md``) as an HTML page, served at ``/runbook``.

Alerts link to their section of the runbook. Plant networks are often offline, so the collector
serves the runbook of the version that runs, and a link such as ``/runbook#collectordatabasedown``
opens without internet access. The Markdown is the small subset the runbook uses (headings,
paragraphs, lists, fenced code, inline code, bold and links); headings get GitHub's anchors, so the
same fragment works on the repository's rendering and here.
"""

from __future__ import annotations

import html
import re
from importlib import resources

_INLINE_CODE = re.compile(r"`([^`]+)`")
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*$")
_LIST_ITEM = re.compile(r"^\s*[-*]\s+(.*)$")

STYLE = (
    "body{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:0 auto;padding:1rem;color:#1d2430}"
    "pre{background:#f2f4f7;padding:.75rem;overflow-x:auto;border-radius:4px}"
    "code{background:#f2f4f7;padding:0 .2em;border-radius:3px}pre code{padding:0}"
    "h2{border-top:1px solid #d8dde4;padding-top:1rem}h2:target{background:#fff4d6}"
)


def anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^a-z0-9 _-]", "", heading.lower()).replace(" ", "-")


def _inline(text: str) -> str:
    """Escape, then apply inline code, bold and links. Code spans are set aside first, so nothing
    inside them is read as Markdown."""
    spans: list[str] = []

    def keep(match: re.Match[str]) -> str:
        spans.append(f"<code>{html.escape(match[1])}</code>")
        return f"\0{len(spans) - 1}\0"

    text = _INLINE_CODE.sub(keep, text)
    text = html.escape(text, quote=False)
    text = _BOLD.sub(r"<strong>\1</strong>", text)
    text = _LINK.sub(_link, text)
    return re.sub(r"\0(\d+)\0", lambda m: spans[int(m[1])], text)


def _link(match: re.Match[str]) -> str:
    label, target = match[1], match[2]
    if target.startswith("#"):
        return f'<a href="{html.escape(target)}">{label}</a>'
    # Other documents of the repository are not served here: keep the text, name the file.
    return f"{label} (<code>docs/{html.escape(target.split('#')[0])}</code>)"


def render(markdown: str, title: str = "Runbook") -> str:
    """The HTML page of a Markdown document written in the runbook's subset."""
    out: list[str] = []
    paragraph: list[str] = []
    in_list = False
    lines = iter(markdown.splitlines())

    def flush() -> None:
        nonlocal in_list
        if paragraph:
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if in_list:
            out.append("</ul>")
            in_list = False

    for line in lines:
        if line.startswith("```"):
            flush()
            code = []
            for inner in lines:
                if inner.startswith("```"):
                    break
                code.append(inner)
            out.append(f"<pre><code>{html.escape(chr(10).join(code))}</code></pre>")
            continue
        heading = _HEADING.match(line)
        if heading:
            flush()
            level, text = len(heading[1]), heading[2]
            out.append(f'<h{level} id="{anchor(text)}">{_inline(text)}</h{level}>')
            continue
        item = _LIST_ITEM.match(line)
        if item:
            if paragraph:
                out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
                paragraph.clear()
            if not in_list:
                out.append("<ul>")
                in_list = True
            out.append(f"<li>{_inline(item[1])}</li>")
            continue
        if not line.strip():
            flush()
        elif in_list and line.startswith("  "):
            out[-1] = out[-1].removesuffix("</li>") + " " + _inline(line.strip()) + "</li>"
        else:
            paragraph.append(line.strip())
    flush()
    body = "\n".join(out)
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title><style>{STYLE}</style></head>"
        f'<body><p><a href="./">&larr; collector status</a></p>\n{body}\n</body></html>'
    )


def runbook_page() -> bytes:
    """The packaged runbook, rendered."""
    text = resources.files("collector.api").joinpath("runbook.md").read_text(encoding="utf-8")
    return render(text, "Collector runbook").encode()
