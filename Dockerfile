# The collector service image (minimal: the package and its command).
FROM python:3.11-slim

WORKDIR /src
COPY pyproject.toml README.md ./
COPY collector ./collector
RUN pip install --no-cache-dir . \
    && useradd --system --uid 10001 --home-dir /var/lib/collector collector \
    && mkdir -p /var/lib/collector/backup /var/lib/collector/data \
    && chown -R collector /var/lib/collector

USER collector
WORKDIR /var/lib/collector
EXPOSE 9108
ENTRYPOINT ["collector"]
CMD ["run"]
