"""Hostile model files, the metrics server's bind address, Kafka security settings, secrets.

- The store refuses a tampered file and a pickle payload; ``streamfuse run`` exits 2 naming it.
- The metrics server listens on the configured host only (loopback by default).
- SSL and SASL_SSL client settings reach every client the worker builds, for both libraries
  (librdkafka's own clients are really built, loading the certificate files).
- A password given in the config file or the environment never shows in logs or errors.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import yaml
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer

from tests.faults.support import Tail
from tests.support.kafka import Broker, unique
from tests.support.scenario import Scenario
from tests.support.worker import events, free_port, produce
from worker.config import settings_from_dict
from worker.transport.kafka_python import admin as admin_module
from worker.transport.kafka_python import clients as kafka_io

MODELS = [{"name": n} for n in ("rf", "hgb", "linear", "mlp")]


def secret() -> str:
    return f"s3cret-{unique('pw')}"


def run_cli(
    config: Path, env: dict[str, str] | None = None, timeout: float = 90
) -> tuple[int, str]:
    done = subprocess.run(
        [sys.executable, "-m", "worker.cli", "run", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )
    return done.returncode, done.stdout + done.stderr


# -- hostile model files -------------------------------------------------------------------------


@pytest.fixture
def store_copy(trained_store: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(trained_store, tmp_path / "model-store"))


def offline_config(path: Path, store: Path) -> Path:
    """A config whose models fail to load before any broker is contacted."""
    config = {
        "kafka": {"bootstrap_servers": "127.0.0.1:1", "connect_timeout_s": 1},
        "store": str(store),
        "models": MODELS,
        "strategy": {"name": "soft_vote"},
        "metrics": {"enabled": False},
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


class _Touch:
    """Unpickling this runs a shell command that leaves a marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def _swap_file(version_dir: Path, filename: str, data: bytes) -> None:
    """Replace a stored file and fix its manifest checksum: an attacker with write access."""
    (version_dir / filename).write_bytes(data)
    manifest_path = version_dir / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["files"][filename] = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}
    manifest_path.write_text(json.dumps(manifest))


@pytest.mark.slow
def test_a_tampered_model_file_stops_the_worker_at_start(store_copy: Path, tmp_path: Path) -> None:
    model_file = store_copy / "rf" / "1" / "model.skops"
    data = bytearray(model_file.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit, manifest untouched
    model_file.write_bytes(bytes(data))
    code, output = run_cli(offline_config(tmp_path / "c.yaml", store_copy))
    assert code == 2, output
    assert "model.skops" in output and "'rf'" in output and "sha256" in output, output
    assert "Traceback" not in output


@pytest.mark.slow
@pytest.mark.parametrize(
    ("model", "filename"), [("hgb", "model.skops"), ("mlp", "model.safetensors")]
)
def test_a_pickle_payload_is_refused_without_running_it(
    store_copy: Path, tmp_path: Path, model: str, filename: str
) -> None:
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Touch(marker))
    pickle.loads(payload)  # the payload works when loaded the unsafe way
    assert marker.exists()
    marker.unlink()
    _swap_file(store_copy / model / "1", filename, payload)
    code, output = run_cli(offline_config(tmp_path / "c.yaml", store_copy))
    assert code == 2, output
    assert filename in output and f"'{model}'" in output and "refusing" in output, output
    assert not marker.exists(), "the pickle payload ran"


# -- the metrics server's address ----------------------------------------------------------------


def listening_addresses(port: int) -> list[str]:
    """Local addresses of the sockets listening on ``port`` (from /proc/net/tcp and tcp6)."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            address, hex_port = fields[1].rsplit(":", 1)
            if int(hex_port, 16) != port or fields[3] != "0A":  # 0A: LISTEN
                continue
            raw = bytes.fromhex(address)
            if len(raw) == 4:
                found.append(socket.inet_ntoa(raw[::-1]))
            else:
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.append(socket.inet_ntop(socket.AF_INET6, words))
    return found


def refused(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=2):
            return False
    except OSError:
        return True


@pytest.mark.kafka
@pytest.mark.parametrize("host", [None, "127.0.0.2"], ids=["default", "configured"])
def test_metrics_listen_on_the_configured_host_only(
    scenario: Callable[..., Scenario], figures, host: str | None
) -> None:
    s = scenario(group="bind")
    port = free_port()
    config = s.config(shadows=())
    data = yaml.safe_load(config.read_text())
    data["metrics"] = {"port": port} if host is None else {"host": host, "port": port}
    config.write_text(yaml.safe_dump(data))
    expected = host or "127.0.0.1"
    worker = s.worker(config, "w.log")
    try:
        worker.wait_assigned()
        with urllib.request.urlopen(f"http://{expected}:{port}/metrics", timeout=5) as response:
            assert response.status == 200
            assert b"streamfuse_events_consumed_total" in response.read()
        # Connections go to loopback addresses only; that the socket is bound to the one
        # configured address (not 0.0.0.0) is read from /proc below, which covers every
        # interface without sending anything to the machine's other addresses.
        others = [a for a in ["127.0.0.1", "127.0.0.3"] if a != expected]
        reachable = [a for a in others if not refused(a, port)]
        bound = listening_addresses(port)
    finally:
        worker.stop()
    figures(metrics_host=expected, listening=bound, refused_on=others)
    assert bound == [expected], f"metrics listen on {bound}"
    assert not reachable, f"metrics reachable on {reachable}"


# -- Kafka security settings reach kafka-python ----------------------------------------------------


def sasl_ssl_settings(password: str, environ: dict[str, str] | None = None) -> Any:
    return settings_from_dict(
        {
            "kafka": {
                "bootstrap_servers": "broker.example:9093",
                "processing_guarantee": "exactly_once",
                "client": {
                    "security_protocol": "SASL_SSL",
                    "sasl_mechanism": "SCRAM-SHA-512",
                    "sasl_plain_username": "streamfuse",
                    "ssl_cafile": "/etc/kafka/ca.pem",
                    "ssl_certfile": "/etc/kafka/client.pem",
                    "ssl_keyfile": "/etc/kafka/client.key",
                    "ssl_check_hostname": True,
                },
            },
            "models": MODELS,
            "strategy": {"name": "soft_vote"},
        },
        environ={"STREAMFUSE_KAFKA__CLIENT__SASL_PLAIN_PASSWORD": password, **(environ or {})},
    )


def test_ssl_and_sasl_ssl_settings_reach_every_kafka_client(monkeypatch) -> None:
    password = secret()
    settings = sasl_ssl_settings(password)
    built: dict[str, dict[str, Any]] = {}

    def recorder(name: str, cls: type) -> Any:
        def make(*topics: str, **config: Any) -> Any:
            unknown = set(config) - set(cls.DEFAULT_CONFIG)  # type: ignore[attr-defined]
            assert not unknown, f"{name}: kafka-python does not know {unknown}"
            built[name] = config

            class Fake:
                def subscribe(self, *args: Any, **kwargs: Any) -> None:
                    pass

                def partitions_for_topic(self, topic: str) -> set[int]:
                    return {0}  # the input consumer waits for its topic's partitions

            return Fake()

        return make

    for module, tag in ((kafka_io, ""), (admin_module, "lag-")):
        monkeypatch.setattr(module, "KafkaAdminClient", recorder(f"{tag}admin", KafkaAdminClient))
        monkeypatch.setattr(module, "KafkaConsumer", recorder(f"{tag}consumer", KafkaConsumer))
    monkeypatch.setattr(kafka_io, "KafkaProducer", recorder("producer", KafkaProducer))
    kafka_io.admin_client(settings)
    kafka_io.output_producer(settings)
    kafka_io.input_consumer(settings)
    built["input"] = built.pop("consumer")
    kafka_io.labels_consumer(settings)
    # The lag monitor's admin builds its own clients (private helper: no broker is needed).
    admin_module.KafkaPythonAdmin(settings)._lag_clients()
    expected = {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_plain_username": "streamfuse",
        "sasl_plain_password": password,  # from STREAMFUSE_KAFKA__CLIENT__SASL_PLAIN_PASSWORD
        "ssl_cafile": "/etc/kafka/ca.pem",
        "ssl_certfile": "/etc/kafka/client.pem",
        "ssl_keyfile": "/etc/kafka/client.key",
        "ssl_check_hostname": True,
    }
    assert sorted(built) == ["admin", "consumer", "input", "lag-admin", "lag-consumer", "producer"]
    for name, config in built.items():
        assert {k: config.get(k) for k in expected} == expected, name
    assert built["producer"]["transactional_id"]
    assert password not in json.dumps(settings.redacted())


def self_signed(directory: Path) -> dict[str, str]:
    """A throwaway CA certificate and a client key and certificate, made by openssl."""
    ca_key, ca, key, csr, cert = (
        directory / n for n in ("ca.key", "ca.pem", "client.key", "client.csr", "client.pem")
    )

    def openssl(*args: str | Path) -> None:
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", ca_key, "-out", ca,
            "-days", "1", "-subj", "/CN=streamfuse-test-ca")  # fmt: skip
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", csr,
            "-subj", "/CN=streamfuse")  # fmt: skip
    openssl("x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial",
            "-out", cert, "-days", "1")  # fmt: skip
    return {"ca": str(ca), "cert": str(cert), "key": str(key)}


def test_ssl_and_sasl_ssl_settings_reach_every_librdkafka_client(monkeypatch, tmp_path) -> None:
    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient

    import worker.transport.librdkafka as rd
    from worker.transport.librdkafka import admin as rd_admin

    files, password = self_signed(tmp_path), secret()
    client = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "streamfuse",
        "ssl.ca.location": files["ca"],
        "ssl.certificate.location": files["cert"],
        "ssl.key.location": files["key"],
        "ssl.endpoint.identification.algorithm": "https",
    }
    settings = settings_from_dict(
        {
            "kafka": {
                "library": "confluent-kafka",
                "processing_guarantee": "exactly_once",
                "client": client,
            },
            "models": MODELS,
            "strategy": {"name": "soft_vote"},
        },
        # A variable's name has no dots: SASL_PASSWORD is librdkafka's sasl.password.
        environ={"STREAMFUSE_KAFKA__CLIENT__SASL_PASSWORD": password},
    )
    assert settings.kafka.client == {**client, "sasl.password": password}
    built: list[tuple[str, dict[str, Any]]] = []

    class Built:
        """What the adapter gets back: the real client was built (and closed) already."""

        topics: ClassVar[dict[str, Any]] = {}

        def subscribe(self, *args: Any, **kwargs: Any) -> None:
            pass

        def list_topics(self, *args: Any, **kwargs: Any) -> Built:
            return self

    def recorder(kind: type) -> Any:
        def make(config: dict[str, Any]) -> Built:
            made = kind(config)  # librdkafka checks every name and loads the three files here
            if isinstance(made, Consumer):
                made.close()
            built.append((kind.__name__ + config["client.id"].removeprefix("streamfuse-0"), config))
            return Built()

        return make

    for module in (rd, rd_admin):
        monkeypatch.setattr(module, "wait_for_broker", lambda *args: None)
        for name, kind in (("consumer", Consumer), ("producer", Producer), ("admin", AdminClient)):
            if hasattr(module, f"make_{name}"):
                monkeypatch.setattr(module, f"make_{name}", recorder(kind))
    transport = rd.LibrdkafkaTransport(settings)
    transport.source()
    transport.labels()
    transport.sink()
    admin = transport.admin()
    admin._client()
    assert admin.lag() == {}  # its consumer is built first: nothing is listed by the stand-in
    assert sorted(name for name, _ in built) == [
        "AdminClient",
        "Consumer",
        "Consumer-labels",
        "Consumer-lag",
        "Producer",
    ]
    expected = {**client, "sasl.password": password}
    for name, config in built:
        assert {k: config.get(k) for k in expected} == expected, name
    producer = next(config for name, config in built if name == "Producer")
    assert producer["transactional.id"] == settings.kafka.effective_transactional_id
    assert password not in json.dumps(settings.redacted())


def test_plain_ssl_settings_validate() -> None:
    settings = settings_from_dict(
        {
            "kafka": {"client": {"security_protocol": "SSL", "ssl_cafile": "/ca.pem"}},
            "models": MODELS,
            "strategy": {"name": "soft_vote"},
        },
        environ={"STREAMFUSE_KAFKA__CLIENT__SSL_PASSWORD": "key-pass"},
    )
    assert settings.kafka.client == {
        "security_protocol": "SSL",
        "ssl_cafile": "/ca.pem",
        "ssl_password": "key-pass",
    }


# -- secrets never in logs or error messages -----------------------------------------------------


@pytest.mark.kafka
def test_a_running_worker_never_logs_its_secrets(
    scenario: Callable[..., Scenario], library, figures
) -> None:
    in_file, in_env = secret(), secret()
    s = scenario(group="secret")
    t = s.topics
    if library == "kafka-python":
        client = {"sasl_plain_username": "streamfuse", "sasl_plain_password": in_file}
        env = {"STREAMFUSE_KAFKA__CLIENT__SSL_PASSWORD": in_env}
    else:  # librdkafka's own debug log of its configuration, which it redacts
        client = {"sasl.username": "streamfuse", "sasl.password": in_file, "debug": "conf"}
        env = {"STREAMFUSE_KAFKA__CLIENT__SSL_KEY_PASSWORD": in_env}
    config = s.config(shadows=(), kafka={"client": client}, logging={"level": "DEBUG"})
    worker = s.worker(config, "w.log", env=env)
    ids, values = events(np.asarray(s.rows[:50]), "sec")
    tail = Tail(s.kafka.bootstrap, t.output)
    try:
        worker.wait_assigned()
        produce(s.kafka.bootstrap, t.input, values)
        tail.wait_all(ids, timeout=60, idle_s=0.2)
        port = yaml.safe_load(config.read_text())["metrics"]["port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            exposition = response.read().decode()
        worker.signal(signal.SIGTERM)
        assert worker.wait(30) == 0
    finally:
        worker.stop()
        tail.close()
    log = worker.text()
    figures(log_lines=len(log.splitlines()), secrets_found=int(in_file in log) + int(in_env in log))
    if library == "confluent-kafka":  # the configuration was logged, its secrets redacted
        assert "sasl.password = [redacted]" in log and "ssl.key.password = [redacted]" in log
    assert in_file not in log and in_env not in log
    assert in_file not in exposition and in_env not in exposition


FAILING_STARTS: dict[str, dict[str, Any]] = {
    # kafka-python's own checks: SASL against a plaintext broker, SSL with a missing CA file.
    "sasl_plaintext_refused": {
        "client": {
            "security_protocol": "SASL_PLAINTEXT",
            "sasl_mechanism": "PLAIN",
            "sasl_plain_username": "u",
            "sasl_plain_password": "{secret}",
        }
    },
    "sasl_ssl_refused": {
        "client": {
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "PLAIN",
            "sasl_plain_username": "u",
            "sasl_plain_password": "{secret}",
        }
    },
    "ssl_missing_ca": {
        "client": {
            "security_protocol": "SSL",
            "ssl_cafile": "/nonexistent/ca.pem",
            "ssl_password": "{secret}",
        }
    },
    # Config mistakes next to a secret: a wrong type, an unknown key.
    "secret_in_wrong_type": {"connect_timeout_s": "{secret}"},
    "secret_under_unknown_key": {"sasl_password": "{secret}"},
    # A misspelt kafka-python setting (one letter off) in each pass-through section.
    "client_typo": {"client": {"sasl_plain_pasword": "{secret}"}},
    "consumer_typo": {"consumer": {"ssl_pasword": "{secret}"}},
    "producer_typo": {"producer": {"sasl_plain_pasword": "{secret}"}},
    # The same with librdkafka's names: it checks them when a client is built.
    "rd_sasl_plaintext_refused": {
        "library": "confluent-kafka",
        "client": {
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanism": "PLAIN",
            "sasl.username": "u",
            "sasl.password": "{secret}",
        },
    },
    "rd_ssl_missing_ca": {
        "library": "confluent-kafka",
        "client": {
            "security.protocol": "SSL",
            "ssl.ca.location": "/nonexistent/ca.pem",
            "ssl.key.password": "{secret}",
        },
    },
    "rd_client_typo": {"library": "confluent-kafka", "client": {"sasl.pasword": "{secret}"}},
    "rd_consumer_typo": {"library": "confluent-kafka", "consumer": {"ssl.key.pasword": "{secret}"}},
    "rd_producer_typo": {"library": "confluent-kafka", "producer": {"sasl.pasword": "{secret}"}},
}


@pytest.fixture(scope="module")
def failing_starts(
    kafka: Broker, trained_store: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[int, str, str]]:
    """Every start in ``FAILING_STARTS`` at once (they mostly wait): exit code, output, secret."""
    root = tmp_path_factory.mktemp("failing-starts")
    running = {}
    for name, kafka_extra in FAILING_STARTS.items():
        password = secret()
        extra = json.loads(json.dumps(kafka_extra).replace("{secret}", password))
        config = {
            "kafka": {
                "bootstrap_servers": kafka.bootstrap,
                "group_id": unique("fs"),
                "connect_timeout_s": 3,
                **extra,
            },
            "topics": {"input": unique("fs"), "create": True, "labels": None},
            "store": str(trained_store),
            # One small model keeps eight concurrent start-ups cheap on a small machine.
            "models": [{"name": "linear"}],
            "strategy": {"name": "soft_vote", "fit": "heldout"},
            "metrics": {"enabled": False},
        }
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(config), encoding="utf-8")
        log = root / f"{name}.log"
        env = {**os.environ, "STREAMFUSE_KAFKA__CLIENT__SSL_PASSWORD": password}
        env.pop("STREAMFUSE_KAFKA__LIBRARY", None)  # each case names its library
        if extra.get("library") == "confluent-kafka":  # librdkafka's name for it
            env["STREAMFUSE_KAFKA__CLIENT__SSL_KEY_PASSWORD"] = env.pop(
                "STREAMFUSE_KAFKA__CLIENT__SSL_PASSWORD"
            )
        proc = subprocess.Popen(
            [sys.executable, "-m", "worker.cli", "run", "--config", str(path)],
            stdout=log.open("wb"),
            stderr=subprocess.STDOUT,
            env=env,
        )
        running[name] = (proc, log, password)
    results = {}
    deadline = time.monotonic() + 240  # thirteen start-ups at once on two cores
    for name, (proc, log, password) in running.items():
        try:
            code = proc.wait(max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            code = proc.wait()
        results[name] = (code, log.read_text(errors="replace"), password)
    return results


@pytest.mark.kafka
@pytest.mark.parametrize("case", FAILING_STARTS)
def test_a_failing_start_never_shows_the_secret(failing_starts, case: str) -> None:
    code, output, password = failing_starts[case]
    assert code in (1, 2), output
    assert output.strip(), "a failing start must say why"
    assert password not in output, output


@pytest.mark.kafka
def test_librdkafka_names_the_missing_ca_file(failing_starts) -> None:
    code, output, _ = failing_starts["rd_ssl_missing_ca"]
    assert code == 2, output
    assert "kafka.client.ssl.ca.location" in output and "/nonexistent/ca.pem" in output, output


@pytest.mark.kafka
@pytest.mark.parametrize(
    "case",
    [
        *("client_typo", "consumer_typo", "producer_typo"),
        *("rd_client_typo", "rd_consumer_typo", "rd_producer_typo"),
    ],
)
def test_a_misspelt_kafka_setting_is_a_config_error(failing_starts, case: str) -> None:
    code, output, _ = failing_starts[case]
    section = case.removeprefix("rd_").split("_")[0]
    assert code == 2, output
    assert f"kafka.{section}." in output and "pasword" in output, output
    assert "Traceback" not in output and "no Kafka broker answered" not in output, output
