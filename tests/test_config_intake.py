"""Configuration of network intake: the MQTT source and the HTTP ingest endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from collector.config import (
    SECRET_MASK,
    ConfigError,
    MqttSourceConfig,
    SourceConfig,
    load_config,
    topic_filter_error,
)


def _load(tmp_path: Path, text: str) -> object:
    path = tmp_path / "collector.yaml"
    path.write_text(text, encoding="utf-8")
    return load_config(path, environ={}, env_file=None)


def test_an_mqtt_source_with_defaults(tmp_path: Path) -> None:
    config = load_config(None, environ={"COLLECTOR_SOURCE__TYPE": "mqtt"}, env_file=None)
    source = config.source
    assert isinstance(source, MqttSourceConfig)
    assert (source.host, source.effective_port(), source.protocol, source.qos) == ("127.0.0.1", 1883, "5", 1)
    assert source.topics == ["plant/#"] and source.shared_group is None
    assert source.session_expiry_s == 86_400


def test_the_full_mqtt_section_reads_and_masks_its_password(tmp_path: Path) -> None:
    secret = tmp_path / "mqtt.pw"
    secret.write_text("s3cret\n", encoding="utf-8")
    config = _load(
        tmp_path,
        f"""
source:
  type: mqtt
  host: broker.plant
  tls: {{enabled: true}}
  username: collector
  password_file: {secret}
  client_id: collector-a
  topics: [plant/+/values, site/#]
  shared_group: collectors
  protocol: "3.1.1"
""",
    )
    source = config.source  # type: ignore[attr-defined]
    assert isinstance(source, MqttSourceConfig)
    assert source.effective_port() == 8883 and source.secret() == "s3cret"
    masked = yaml.safe_load(yaml.safe_dump(config.masked()))  # type: ignore[attr-defined]
    assert masked["source"]["password_file"] == str(secret)
    inline = load_config(
        None,
        environ={
            "COLLECTOR_SOURCE__TYPE": "mqtt",
            "COLLECTOR_SOURCE__USERNAME": "u",
            "COLLECTOR_SOURCE__PASSWORD": "pw",
        },
        env_file=None,
    )
    assert inline.masked()["source"]["password"] == SECRET_MASK


def test_a_source_section_without_type_is_the_simulator(tmp_path: Path) -> None:
    config = _load(tmp_path, "source: {groups: 3}\n")
    assert isinstance(config.source, SourceConfig)  # type: ignore[attr-defined]
    assert config.source.groups == 3  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("section", "key", "message"),
    [
        ("topics: []", "source.topics", "at least 1 item"),
        ("topics: ['plant/#/x']", "source.topics", "'#' must be a whole level and the last one"),
        ("topics: ['plant/a+']", "source.topics", "'+' must be a whole level"),
        ("topics: ['$share/g/plant/#']", "source.topics", "give the share group in shared_group"),
        ("shared_group: 'a/b'", "source.shared_group", "contain no '/'"),
        ("qos: 2", "source.qos", "Input should be 0 or 1"),
        ("protocol: '3'", "source.protocol", "Input should be '5' or '3.1.1'"),
        ("port: 0", "source.port", "greater than or equal to 1"),
        ("password: x", "source", "a password needs a username"),
        ("tls: {enabled: true, ca_file: /nonexistent/ca.pem}", "source.tls.ca_file", "not a readable file"),
        ("groups: 3", "source.groups", "unknown key"),
        ("reconnect_min_s: 10\n  reconnect_max_s: 5", "source", "reconnect_min_s must not exceed"),
    ],
)
def test_mqtt_mistakes_fail_at_start_naming_the_key(
    tmp_path: Path, section: str, key: str, message: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, f"source:\n  type: mqtt\n  {section}\n")
    assert f"  {key}: " in str(caught.value)
    assert message in str(caught.value)


def test_topic_filters() -> None:
    for good in ("#", "+", "plant/+/line/#", "a//b", "/leading"):
        assert topic_filter_error(good) is None, good
    for bad in ("", "a#", "a/#/b", "a+/b"):
        assert topic_filter_error(bad) is not None, bad


def test_ingest_is_on_for_loopback_and_needs_a_token_beyond_it(tmp_path: Path) -> None:
    local = load_config(None, environ={}, env_file=None)
    assert local.api.ingest_enabled()
    wide = load_config(None, environ={"COLLECTOR_API__HOST": "0.0.0.0"}, env_file=None)
    assert not wide.api.ingest_enabled()  # no token: off, rather than open to the network
    token = tmp_path / "token"
    token.write_text("abc123\n", encoding="utf-8")
    guarded = load_config(
        None,
        environ={"COLLECTOR_API__HOST": "0.0.0.0", "COLLECTOR_API__INGEST__TOKEN_FILE": str(token)},
        env_file=None,
    )
    assert guarded.api.ingest_enabled() and guarded.api.ingest.secret() == "abc123"
    with pytest.raises(ConfigError, match=r"api: ingest.token \(or ingest.token_file\) is required"):
        load_config(
            None,
            environ={"COLLECTOR_API__HOST": "192.0.2.1", "COLLECTOR_API__INGEST__ENABLED": "true"},
            env_file=None,
        )
    masked = load_config(None, environ={"COLLECTOR_API__INGEST__TOKEN": "abc"}, env_file=None).masked()
    assert masked["api"]["ingest"]["token"] == SECRET_MASK


def test_ingest_token_mistakes_name_the_key(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.write_text("", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"api.ingest.token_file: .* is empty: its first line must hold"):
        load_config(None, environ={"COLLECTOR_API__INGEST__TOKEN_FILE": str(empty)}, env_file=None)
    with pytest.raises(ConfigError, match=r"api.ingest.max_body_bytes: .*greater than or equal to 1024"):
        load_config(None, environ={"COLLECTOR_API__INGEST__MAX_BODY_BYTES": "10"}, env_file=None)
