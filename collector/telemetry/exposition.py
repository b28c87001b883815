"""``/metrics`` at a fraction of the cost: prometheus-client's exposition with its formatting cached.

Measured in-process (docs/benchmarks.md), prometheus-client renders the service's registry in about
1.4 ms in the text format and 2.4 ms in OpenMetrics (which Prometheus asks for), most of it
formatting: every sample's name and labels are validated and escaped again at every scrape, though
they never change. This encoder renders
each family's header and each sample's ``name{labels}`` once and keeps them; a scrape then formats
only the values. Its output is byte for byte the library's (a test compares the two on a running
service, exemplars included), and anything it does not cache (native histograms, timestamps, other
name escapings, ``name[]`` filters) goes to the library unchanged.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs
from wsgiref.types import StartResponse, WSGIEnvironment

from prometheus_client import exposition
from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import exposition as om
from prometheus_client.registry import Collector, CollectorRegistry
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

_SIMPLE_TYPES = frozenset({"counter", "gauge", "histogram", "unknown", "info", "summary"})
_TEXT_TYPES = {"unknown": "untyped", "info": "gauge"}
_OM_SUFFIXES = ("_created", "_gsum", "_gcount")
LabelKey = tuple[tuple[str, str], ...]
MetricsApp = Callable[[WSGIEnvironment, StartResponse], Iterator[bytes]]

# The library's functions, typed for this module.
_go_float: Callable[[float], str] = floatToGoString
_om_latest: Callable[..., bytes] = om.generate_latest


class _One(Collector):
    """A registry of one family, to hand a family the fast path does not cover to the library."""

    def __init__(self, metric: Metric) -> None:
        self._metric = metric

    def collect(self) -> Iterable[Metric]:
        return [self._metric]


def _exemplar(exemplar: Any) -> str:
    """An exemplar as OpenMetrics writes it (prometheus-client's own composition)."""
    labels = ",".join(
        '{}="{}"'.format(k, v.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\""))
        for k, v in sorted(exemplar.labels.items())
    )
    text = f" # {{{labels}}} {_go_float(exemplar.value)}"
    return text if exemplar.timestamp is None else f"{text} {exemplar.timestamp}"


def _simple(metric: Metric) -> bool:
    return metric.type in _SIMPLE_TYPES and all(
        s.timestamp is None and s.native_histogram is None and s.value is not None for s in metric.samples
    )


class CachedEncoder:
    """Renders a registry in the text format or OpenMetrics 1.0, caching what does not change."""

    def __init__(self) -> None:
        self._headers: dict[tuple[bool, str, str, str, str], str] = {}
        self._prefixes: dict[tuple[bool, str, LabelKey], str] = {}

    # ---------------------------------------------------------------- text format

    def text(self, registry: Collector) -> bytes:
        out: list[str] = []
        for metric in registry.collect():
            if not _simple(metric):
                out.append(exposition.generate_latest(_One(metric)).decode())
                continue
            out.append(self._header(False, metric))
            extra: dict[str, list[str]] = {}
            base = metric.name
            for sample in metric.samples:
                line = self._line(False, sample)
                for suffix in _OM_SUFFIXES:
                    if sample.name == base + suffix:
                        extra.setdefault(suffix, []).append(line)
                        break
                else:
                    out.append(line)
            for suffix, lines in sorted(extra.items()):
                out.append(self._suffix_header(metric, suffix))
                out.extend(lines)
        return "".join(out).encode()

    def _header(self, openmetrics: bool, metric: Metric) -> str:
        key = (openmetrics, metric.name, metric.type, metric.documentation, metric.unit)
        header = self._headers.get(key)
        if header is None:
            rendered = self._render(openmetrics, metric)
            header = rendered[: rendered.index("\n", rendered.index("# TYPE ")) + 1]
            if openmetrics and metric.unit:
                header = rendered[: rendered.index("\n", rendered.index("# UNIT ")) + 1]
            self._headers[key] = header
        return header

    def _suffix_header(self, metric: Metric, suffix: str) -> str:
        key = (False, metric.name + suffix, "gauge", metric.documentation, "")
        header = self._headers.get(key)
        if header is None:
            doc = metric.documentation.replace("\\", r"\\").replace("\n", r"\n")
            name = metric.name + suffix
            header = f"# HELP {name} {doc}\n# TYPE {name} gauge\n"
            self._headers[key] = header
        return header

    def _line(self, openmetrics: bool, sample: Sample) -> str:
        labels: LabelKey = tuple(sorted(sample.labels.items())) if sample.labels else ()
        key = (openmetrics, sample.name, labels)
        prefix = self._prefixes.get(key)
        if prefix is None:
            prefix = self._sample_prefix(openmetrics, sample)
            self._prefixes[key] = prefix
        value = _go_float(sample.value)
        if openmetrics and sample.exemplar is not None:
            return f"{prefix}{value}{_exemplar(sample.exemplar)}\n"
        return f"{prefix}{value}\n"

    @staticmethod
    def _sample_prefix(openmetrics: bool, sample: Sample) -> str:
        """``name{labels} `` as the library writes it (rendered by the library, once)."""
        probe = Sample(sample.name, sample.labels, 0.0)
        family = Metric(sample.name, "", "unknown")
        family.samples = [probe]
        rendered = (_om_latest if openmetrics else exposition.generate_latest)(_One(family)).decode()
        line = next(text for text in rendered.splitlines() if text and not text.startswith("#"))
        return line[: -len("0.0")]

    @staticmethod
    def _render(openmetrics: bool, metric: Metric) -> str:
        empty = Metric(metric.name, metric.documentation, metric.type, metric.unit)
        encode = _om_latest if openmetrics else exposition.generate_latest
        return str(encode(_One(empty)).decode())

    # ---------------------------------------------------------------- OpenMetrics

    def openmetrics(self, registry: Collector) -> bytes:
        out: list[str] = []
        for metric in registry.collect():
            if not _simple(metric):
                rendered = _om_latest(_One(metric)).decode()
                out.append(rendered.removesuffix("# EOF\n"))
                continue
            out.append(self._header(True, metric))
            out.extend(self._line(True, sample) for sample in metric.samples)
        out.append("# EOF\n")
        return "".join(out).encode()


def make_metrics_app(
    registry: CollectorRegistry,
) -> Callable[[WSGIEnvironment, StartResponse], Iterator[bytes]]:
    """A WSGI app serving ``registry`` like prometheus-client's ``make_wsgi_app`` (content
    negotiation, gzip, ``name[]`` filters), through a :class:`CachedEncoder`."""
    encoder = CachedEncoder()
    library = exposition.make_wsgi_app(registry)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterator[bytes]:
        params = parse_qs(environ.get("QUERY_STRING", ""))
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD") or "name[]" in params:
            yield from library(environ, start_response)
            return
        chosen, content_type = exposition.choose_encoder(environ.get("HTTP_ACCEPT", ""))
        escaping = getattr(chosen, "keywords", {}).get("escaping", om.UNDERSCORES)
        if escaping != om.UNDERSCORES:
            yield from library(environ, start_response)
            return
        if content_type.startswith("application/openmetrics-text"):
            output = encoder.openmetrics(registry)
        else:
            output = encoder.text(registry)
        headers: list[tuple[str, Any]] = [("Content-Type", content_type)]
        if exposition.gzip_accepted(environ.get("HTTP_ACCEPT_ENCODING", "")):
            output = gzip.compress(output)
            headers.append(("Content-Encoding", "gzip"))
        start_response("200 OK", headers)
        yield output

    return app
