"""Builds the network sources from the validated configuration (the sources take plain values)."""

from __future__ import annotations

import socket

from collector.config import MqttSourceConfig
from collector.sources.counters import LagObserver, SourceCounters, SourceState
from collector.sources.intake import Intake
from collector.sources.mqtt import MqttSettings, MqttSource
from collector.sources.network import PayloadIntake

INGEST_PATH = "/api/v1/values"


def mqtt_settings(cfg: MqttSourceConfig) -> MqttSettings:
    return MqttSettings(
        host=cfg.host,
        port=cfg.effective_port(),
        protocol=cfg.protocol,
        client_id=cfg.client_id or f"collector-{socket.gethostname()}",
        username=cfg.username,
        password=cfg.secret(),
        tls=cfg.tls.enabled,
        ca_file=cfg.tls.ca_file,
        cert_file=cfg.tls.cert_file,
        key_file=cfg.tls.key_file,
        tls_insecure=cfg.tls.insecure,
        session_expiry_s=cfg.session_expiry_s,
        topics=tuple(cfg.topics),
        shared_group=cfg.shared_group,
        qos=cfg.qos,
        keepalive_s=cfg.keepalive_s,
        reconnect_min_s=cfg.reconnect_min_s,
        reconnect_max_s=cfg.reconnect_max_s,
        receive_maximum=cfg.receive_maximum,
        max_payload_bytes=cfg.max_payload_bytes,
    )


def build_mqtt_source(cfg: MqttSourceConfig, intake: Intake, lag_observer: LagObserver | None) -> MqttSource:
    settings = mqtt_settings(cfg)
    counters = SourceCounters(
        "mqtt", endpoint=settings.endpoint, subscriptions=settings.subscriptions, lag_observer=lag_observer
    )
    return MqttSource(settings, PayloadIntake(intake, counters, partial=True))


def build_http_intake(intake: Intake, lag_observer: LagObserver | None) -> PayloadIntake:
    counters = SourceCounters(
        "http", endpoint=INGEST_PATH, state=SourceState.LISTENING, lag_observer=lag_observer
    )
    return PayloadIntake(intake, counters, partial=False)
