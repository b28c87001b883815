# The collector service image: the package and its command. The HTTP API (metrics, status, health)
# listens on all interfaces inside the container; publish it on a trusted address only.
# Pinned by digest: the same base on every build until someone moves it on purpose
# (docs/security.md#container-images says how).
FROM python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY collector ./collector
# The runbook the API serves at /runbook (collector/api/runbook.md links to it).
COPY docs/runbook.md ./docs/runbook.md
RUN pip install --no-cache-dir -c constraints.txt . \
    && useradd --system --uid 10001 --home-dir /var/lib/collector collector \
    && mkdir -p /var/lib/collector/backup /var/lib/collector/data \
    && chown -R collector /var/lib/collector

USER collector
WORKDIR /var/lib/collector
ENV COLLECTOR_API__HOST=0.0.0.0 \
    COLLECTOR_API__PORT=9108
EXPOSE 9108
HEALTHCHECK --interval=15s --timeout=3s --start-period=30s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9108/healthz', timeout=2)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["collector"]
CMD ["run"]
