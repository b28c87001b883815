"""The HTTP API on one port: Prometheus metrics, the JSON status, health probes, OpenAPI."""

from collector.api.app import ApiApp, Observed
from collector.api.server import ApiServer, ServerLimits
from collector.api.status import ServiceInfo

__all__ = ["ApiApp", "ApiServer", "Observed", "ServerLimits", "ServiceInfo"]
