"""Traces: a TracerProvider configured from the standard ``OTEL_*`` environment variables.

Spans are exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (or ``OTEL_TRACES_EXPORTER=otlp`` asks for the default
endpoint); ``OTEL_TRACES_EXPORTER=console`` prints them; with none of these nothing is recorded and
the writer's spans cost next to nothing. The exporter itself reads its usual variables (headers,
timeout, compression), the SDK reads the sampler (``OTEL_TRACES_SAMPLER``), the batch processor
settings (``OTEL_BSP_*``) and the resource (``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``).
The resource always carries ``service.instance.id``, so the traces of several plants can be told
apart: ``OTEL_RESOURCE_ATTRIBUTES=service.instance.id=...`` sets it, else it is the host name and
the API port.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass

from opentelemetry import trace
from opentelemetry.sdk.resources import (
    SERVICE_INSTANCE_ID,
    SERVICE_NAME,
    SERVICE_VERSION,
    OTELResourceDetector,
    Resource,
)
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter

from collector import __version__
from collector.logs import log_event
from collector.redaction import redact_dsn

log = logging.getLogger("collector.telemetry")

DEFAULT_SERVICE_NAME = "plc-tag-collector"
TRACER_NAME = "collector"
ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")


@dataclass(frozen=True, slots=True)
class Tracing:
    """The tracer the writer uses, and the provider behind it when this service owns one."""

    tracer: trace.Tracer
    provider: TracerProvider | None = None
    exporters: tuple[str, ...] = ()

    def install_globally(self) -> None:
        """Make this provider the process's global one, so that spans made through
        ``trace.get_tracer`` (a sink's driver spans) are exported with the writer's. Only for the
        process that owns tracing (``collector run``); an embedding application keeps its own."""
        if self.provider is not None:
            trace.set_tracer_provider(self.provider)

    def shutdown(self) -> None:
        """Export what is pending and release the exporters. Safe to call twice."""
        if self.provider is not None:
            self.provider.shutdown()


def exporter_names(environ: Mapping[str, str]) -> list[str]:
    """The exporters the environment asks for: ``OTEL_TRACES_EXPORTER`` if set, else ``otlp``
    when an OTLP endpoint is set, else none."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return []
    raw = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if not raw:
        return ["otlp"] if any(environ.get(name, "").strip() for name in ENDPOINT_VARIABLES) else []
    names = [name.strip() for name in raw.split(",") if name.strip()]
    return [] if "none" in names else names


def default_instance_id(port: int | None = None) -> str:
    """``service.instance.id`` when ``OTEL_RESOURCE_ATTRIBUTES`` sets none: the host name, and the
    API port when there is one (two collectors on one machine cannot share a port). Stable across
    restarts, so a plant's traces stay together, and readable in a trace view."""
    host = socket.gethostname() or "localhost"
    return f"{host}:{port}" if port else host


def configure_tracing(environ: Mapping[str, str] | None = None, *, instance_id: str | None = None) -> Tracing:
    """Build the tracing the environment asks for (``os.environ`` by default); ``instance_id`` is
    the resource's ``service.instance.id`` unless ``OTEL_RESOURCE_ATTRIBUTES`` names one."""
    env = os.environ if environ is None else environ
    exporters: list[tuple[str, SpanExporter]] = []
    for name in exporter_names(env):
        exporter = _exporter(name, env)
        if exporter is not None:
            exporters.append((name, exporter))
    if not exporters:
        # Nothing to export to: use the global tracer, a no-op unless the application embedding the
        # collector installed a provider of its own.
        return Tracing(trace.get_tracer(TRACER_NAME, __version__))
    provider = TracerProvider(resource=_resource(instance_id or default_instance_id()))
    for _, exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    names = tuple(name for name, _ in exporters)
    endpoint = next((env[v] for v in ENDPOINT_VARIABLES if env.get(v)), None)
    log_event(
        log,
        logging.INFO,
        "tracing_enabled",
        exporters=",".join(names),
        endpoint=redact_dsn(endpoint) if endpoint else None,  # user:password@ is allowed there
    )
    return Tracing(provider.get_tracer(TRACER_NAME, __version__), provider, names)


def _exporter(name: str, env: Mapping[str, str]) -> SpanExporter | None:
    if name == "otlp":
        protocol = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get("OTEL_EXPORTER_OTLP_PROTOCOL") or ""
        )
        if protocol and protocol != "http/protobuf":
            log_event(
                log,
                logging.WARNING,
                "tracing_protocol_unsupported",
                "only OTLP over HTTP (http/protobuf) is installed; using it",
                requested=protocol,
            )
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        return OTLPSpanExporter()
    if name == "console":
        return ConsoleSpanExporter()
    log_event(
        log, logging.WARNING, "tracing_exporter_unknown", "unknown OTEL_TRACES_EXPORTER entry", name=name
    )
    return None


def _resource(instance_id: str) -> Resource:
    # Resource.create reads OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES; ours fill the gaps.
    resource = Resource.create({SERVICE_VERSION: __version__})
    defaults: dict[str, str] = {}
    if str(resource.attributes.get(SERVICE_NAME, "")).startswith("unknown_service"):
        defaults[SERVICE_NAME] = DEFAULT_SERVICE_NAME
    # The SDK may invent a random id per start; a stable one keeps a plant's traces together
    # across restarts, so ours replaces it unless the environment names one.
    if not OTELResourceDetector().detect().attributes.get(SERVICE_INSTANCE_ID):
        defaults[SERVICE_INSTANCE_ID] = instance_id
    return resource.merge(Resource(defaults)) if defaults else resource
