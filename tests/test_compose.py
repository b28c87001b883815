"""docker-compose.yml holds together: it parses, what it mounts exists, and its names, ports and
variables agree with the collector's configuration and with .env.example. And it is hardened:
images pinned by digest, passwords only as secret files, no capabilities, no privilege gain, a
read-only root wherever the image allows one."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from collector.config import ApiConfig, OracleSinkConfig, load_config
from collector.sinks import schema_ddl

REPO = Path(__file__).resolve().parents[1]
COMPOSE = REPO / "docker-compose.yml"
ENV_EXAMPLE = REPO / ".env.example"
INIT_DIR = REPO / "docker" / "oracle" / "initdb"
SECRETS_DIR = "/run/secrets/"
DIGEST = re.compile(r"^[\w./-]+(:[\w.-]+)?@sha256:[0-9a-f]{64}$")
# Variables that carry a secret's value itself; the stack must give each as a *_FILE instead.
SECRET_VALUE = re.compile(r"(PASSWORD|SECRET|TOKEN)$")
READ_ONLY_EXEMPT = {"oracle": "the database writes its software tree at first start"}

_REFERENCE = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::?(?P<op>[-?])(?P<arg>[^}]*))?\}")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    loaded = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(loaded, dict)
    return loaded


@pytest.fixture(scope="module")
def example_env() -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value.strip()
    return values


def substitute(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?message} against ``env``."""

    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group("name"), match.group("op"), match.group("arg")
        if env.get(name):
            return env[name]
        if op == "-":
            return arg or ""
        raise AssertionError(f"{name} is required by docker-compose.yml but has no value")

    return _REFERENCE.sub(one, value)


def service_env(
    service: dict[str, Any], env: dict[str, str], secrets: dict[str, Path] | None = None
) -> dict[str, str]:
    """The service's environment as compose gives it; with ``secrets``, a path to a mounted secret
    (``/run/secrets/<name>``) becomes the path of a local file holding that secret."""
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    values = {key: substitute(str(value), env) for key, value in raw.items()}
    if secrets is not None:
        for key, value in values.items():
            if value.startswith(SECRETS_DIR):
                name = value.removeprefix(SECRETS_DIR)
                assert name in (service.get("secrets") or []), f"{key} reads secret {name}, not mounted"
                values[key] = str(secrets[name])
    return values


def secret_files(compose: dict[str, Any], directory: Path) -> dict[str, Path]:
    """A local file for every secret the stack declares, holding an example password."""
    files = {}
    for name in compose.get("secrets") or {}:
        files[name] = directory / name
        files[name].write_text(f"example-{name}\n", encoding="utf-8")
    return files


@pytest.fixture
def secrets(compose: dict[str, Any], tmp_path: Path) -> dict[str, Path]:
    return secret_files(compose, tmp_path)


def published(service: dict[str, Any], env: dict[str, str]) -> list[tuple[str, int, int]]:
    """(host address, host port, container port) for every published port."""
    out = []
    for spec in service.get("ports", []):
        parts = substitute(str(spec), env).split(":")
        assert len(parts) == 3, f"publish {spec} on an explicit address (127.0.0.1)"
        out.append((parts[0], int(parts[1]), int(parts[2])))
    return out


def test_every_reference_is_in_env_example_and_every_entry_is_used(
    compose: dict[str, Any], example_env: dict[str, str]
) -> None:
    referenced = {m.group("name") for m in _REFERENCE.finditer(COMPOSE.read_text(encoding="utf-8"))}
    assert referenced, "the compose file should take its secrets from .env"
    assert referenced <= set(example_env), f"missing from .env.example: {referenced - set(example_env)}"
    # An entry that is neither used by compose nor read by the collector is a stale one.
    collector_names = {"ORACLE_DSN", "ORACLE_HOST", "ORACLE_PORT", "ORACLE_SERVICE_NAME", "ORACLE_USER"}
    collector_names |= {"ORACLE_PASSWORD", "ORACLE_PASSWORD_FILE"}
    unused = set(example_env) - referenced - collector_names
    assert not unused, f".env.example lists variables nobody reads: {unused}"


def test_mounted_files_and_build_context_exist(compose: dict[str, Any]) -> None:
    declared = set((compose.get("volumes") or {}).keys())
    for name, service in compose["services"].items():
        for mount in service.get("volumes", []):
            source = str(mount).split(":")[0]
            if source.startswith((".", "/")):
                assert (REPO / source).exists(), f"{name} mounts {source}, which does not exist"
            else:
                assert source in declared, f"{name} uses volume {source}, which is not declared"
        build = service.get("build")
        if build is not None:
            context = REPO / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = context / (
                "Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile")
            )
            assert dockerfile.is_file(), f"{name} builds from {dockerfile}, which does not exist"
            for line in dockerfile.read_text(encoding="utf-8").splitlines():
                if line.startswith("COPY "):
                    for source in line.split()[1:-1]:
                        assert (context / source).exists(), (
                            f"the Dockerfile copies {source}, which does not exist"
                        )


def test_oracle_service_is_oracle_free_23_slim_with_health_and_a_named_volume(
    compose: dict[str, Any],
) -> None:
    oracle = compose["services"]["oracle"]
    assert re.match(r"^gvenzl/oracle-free:23[\w.-]*slim", oracle["image"])
    assert "oracle-data:/opt/oracle/oradata" in oracle["volumes"]
    assert "./docker/oracle/initdb:/container-entrypoint-initdb.d:ro" in oracle["volumes"]
    test = " ".join(oracle["healthcheck"]["test"])
    assert "healthcheck.sh" in test
    collector = compose["services"]["collector"]
    assert collector["depends_on"]["oracle"]["condition"] == "service_healthy"


def test_init_script_creates_the_collectors_table_in_the_app_schema(
    compose: dict[str, Any], example_env: dict[str, str]
) -> None:
    scripts = sorted(INIT_DIR.glob("*.sh"))
    assert scripts, "no init script"
    for script in scripts:
        # The image runs an executable script; a non-executable one would be sourced into its shell.
        assert os.access(script, os.X_OK), f"{script.name} must be executable"
    text = "\n".join(script.read_text(encoding="utf-8") for script in scripts)
    assert f'pdb="${{ORACLE_PDB:-{example_env["ORACLE_SERVICE_NAME"]}}}"' in text
    assert "ALTER SESSION SET CONTAINER = ${pdb}" in text
    assert "ALTER SESSION SET CURRENT_SCHEMA = ${APP_USER}" in text
    # The DDL it runs is exactly what `collector schema --dialect oracle` prints, found beside it.
    assert (INIT_DIR / "tag_data.ddl").read_text(encoding="utf-8") == schema_ddl("oracle")
    assert 'ddl="${here}/tag_data.ddl"' in text and "@${ddl}" in text
    # The health check waits for the marker the script leaves once the table exists (the script
    # itself is run in tests/test_oracle_init_script.py).
    marker = re.search(r'marker="\$\{TAG_DATA_MARKER:-([^}]+)\}"', text)
    assert marker is not None
    assert marker.group(1) in " ".join(compose["services"]["oracle"]["healthcheck"]["test"])
    # Only the scripts run: SQL files there would run as SYS in the root container.
    assert not list(INIT_DIR.glob("*.sql"))


def test_ports_and_names_agree_with_the_configuration(
    compose: dict[str, Any], example_env: dict[str, str], secrets: dict[str, Path]
) -> None:
    oracle = compose["services"]["oracle"]
    collector = compose["services"]["collector"]
    default_port = OracleSinkConfig.model_fields["port"].default
    assert published(oracle, example_env) == [("127.0.0.1", int(example_env["ORACLE_PORT"]), default_port)]

    env = service_env(collector, example_env, secrets)
    config = load_config(None, environ=env, env_file=None)
    sink = config.sink
    assert isinstance(sink, OracleSinkConfig)
    assert sink.host == "oracle"  # the compose service name
    assert sink.port == default_port
    assert sink.service_name == example_env["ORACLE_SERVICE_NAME"]
    assert sink.user == example_env["ORACLE_USER"]
    assert sink.secret() == "example-oracle_password"
    # The app user the oracle service creates is the user the collector logs in as, with the
    # password from the same secret file.
    oracle_env = service_env(oracle, example_env, secrets)
    app_password = Path(oracle_env["APP_USER_PASSWORD_FILE"]).read_text(encoding="utf-8").strip()
    assert (oracle_env["APP_USER"], app_password) == (sink.user, sink.secret())

    assert config.api.port == ApiConfig.model_fields["port"].default
    assert published(collector, example_env) == [
        ("127.0.0.1", int(example_env["PUBLISHED_API_PORT"]), config.api.port)
    ]
    # The backup directory is the mounted volume, so backups survive the container.
    assert any(str(m).endswith(f":{config.backup.dir}") for m in collector["volumes"])

    # The DSN for the host side points at the published port and the same service.
    assert (
        example_env["ORACLE_DSN"]
        == f"localhost:{example_env['ORACLE_PORT']}/{example_env['ORACLE_SERVICE_NAME']}"
    )


def test_every_image_is_pinned_by_digest(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        if "image" in service:
            assert DIGEST.match(service["image"]), f"{name}: {service['image']} is not pinned by digest"
    froms = [
        line.split()[1] for line in (REPO / "Dockerfile").read_text().splitlines() if line.startswith("FROM ")
    ]
    assert froms, "the Dockerfile has no FROM"
    for image in froms:
        assert DIGEST.match(image), f"the Dockerfile's base {image} is not pinned by digest"


def test_passwords_are_secret_files_never_environment_values(compose: dict[str, Any]) -> None:
    declared = compose.get("secrets") or {}
    assert declared, "the stack declares no secrets"
    for name, secret in declared.items():
        source = Path(secret["file"])
        assert source.parts[:2] == ("secrets", name), f"secret {name} is read from {source}"
    used: set[str] = set()
    for name, service in compose["services"].items():
        environment = service.get("environment") or {}
        for key, value in environment.items():
            assert not SECRET_VALUE.search(key), (
                f"{name} sets {key} in its environment: give the password as a *_FILE secret"
            )
            if str(value).startswith(SECRETS_DIR):
                assert key.endswith("_FILE"), f"{name}: {key} names a secret file but is not a *_FILE"
                used.add(str(value).removeprefix(SECRETS_DIR))
        for secret in service.get("secrets") or []:
            assert secret in declared, f"{name} mounts undeclared secret {secret}"
    assert used == set(declared), f"declared but unused secrets: {set(declared) - used}"
    # The operator's files stay out of the repository.
    assert "/secrets/" in (REPO / ".gitignore").read_text().splitlines()
    example = (REPO / ".env.example").read_text(encoding="utf-8")
    assert not re.search(r"^\w*PASSWORD=", example, flags=re.MULTILINE), ".env.example holds a password"


def test_grafana_has_no_default_admin_password(compose: dict[str, Any]) -> None:
    grafana = compose["services"]["grafana"]
    environment = grafana["environment"]
    assert "GF_SECURITY_ADMIN_PASSWORD" not in environment
    assert environment["GF_SECURITY_ADMIN_PASSWORD__FILE"] == f"{SECRETS_DIR}grafana_admin_password"
    assert "grafana_admin_password" in grafana["secrets"]


def test_every_container_drops_capabilities_and_privilege_gain(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        assert service.get("cap_drop") == ["ALL"], f"{name} keeps capabilities"
        assert "no-new-privileges:true" in (service.get("security_opt") or []), (
            f"{name} may gain privileges (no-new-privileges:true)"
        )


def test_roots_are_read_only_and_only_data_is_writable(
    compose: dict[str, Any], example_env: dict[str, str], secrets: dict[str, Path]
) -> None:
    declared = set(compose.get("volumes") or {})
    for name, service in compose["services"].items():
        if name in READ_ONLY_EXEMPT:
            assert not service.get("read_only"), f"{name} is listed as exempt but is read-only now"
            continue
        assert service.get("read_only") is True, f"{name} runs with a writable root"
        for mount in service.get("volumes", []):
            source, target, *options = str(mount).split(":")
            # Writable: named data volumes only; files from the repository are mounted read-only.
            assert source in declared or options == ["ro"], f"{name} mounts {source} at {target} writable"
    # Every directory the collector writes to is on a volume: its backups and write-ahead log.
    collector = compose["services"]["collector"]
    volumes = {Path(str(m).split(":")[1]) for m in collector["volumes"]}
    config = load_config(None, environ=service_env(collector, example_env, secrets), env_file=None)
    dockerfile = (REPO / "Dockerfile").read_text(encoding="utf-8")
    workdir = Path(re.findall(r"^WORKDIR (\S+)$", dockerfile, flags=re.MULTILINE)[-1])
    for directory in (config.backup.dir, config.wal_dir):
        path = workdir / directory  # an absolute directory stays itself
        assert any(path == v or v in path.parents for v in volumes), f"the collector writes {path}: no volume"
