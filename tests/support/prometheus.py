"""Debian's Prometheus server for the tests: the repo's local config, alert rules and consoles."""

from __future__ import annotations

import json
import shutil
import subprocess
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tests.support.kafka import wait_for
from tests.support.worker import free_port

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
CONSOLES = DEPLOY / "prometheus" / "consoles"
CONSOLE_LIBRARIES = DEPLOY / "prometheus" / "console_libraries"
ALERTS_FILE = DEPLOY / "prometheus" / "alerts.yml"


def get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return str(response.read().decode())


def local_config(path: Path, target_port: int, rules: Path | None = None) -> Path:
    """``deploy/prometheus-local.yml`` scraping ``127.0.0.1:target_port``, rules made absolute
    (or ``rules`` instead of the repo's rule files)."""
    config = yaml.safe_load(
        (DEPLOY / "prometheus-local.yml")
        .read_text()
        .replace("127.0.0.1:9464", f"127.0.0.1:{target_port}")
    )
    config["rule_files"] = [str(DEPLOY / rule) for rule in config.get("rule_files", [])]
    if rules is not None:
        config["rule_files"] = [str(rules)]
    path.write_text(yaml.safe_dump(config))
    return path


@dataclass
class Prometheus:
    url: str
    proc: subprocess.Popen[bytes]

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = json.loads(
            get(self.url + "/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
        )
        return list(body["data"]["result"])

    def value(self, expr: str) -> float | None:
        result = self.query(expr)
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def start_prometheus(
    folder: Path, target_port: int, consoles: Path = CONSOLES, rules: Path | None = None
) -> Prometheus:
    """Start ``prometheus`` on a free port with its data and log in ``folder``; wait until ready.

    Fails (does not skip) when Prometheus is not installed: ``dev/setup`` installs it as root.
    """
    import pytest

    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("Debian's prometheus is not installed (dev/setup installs it as root)")
    config = local_config(folder / "prometheus.yml", target_port, rules)
    port = free_port()
    with open(folder / "prometheus.log", "wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
                f"--web.console.templates={consoles}",
                f"--web.console.libraries={CONSOLE_LIBRARIES}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    prometheus = Prometheus(f"http://127.0.0.1:{port}", proc)

    def ready() -> bool:
        if proc.poll() is not None:
            log_text = (folder / "prometheus.log").read_text(errors="replace")
            raise RuntimeError(f"prometheus exited with {proc.returncode}:\n{log_text}")
        try:
            return "Ready" in get(prometheus.url + "/-/ready")
        except OSError:
            return False

    try:
        wait_for(ready, timeout=60, what="Prometheus to be ready")
    except BaseException:
        prometheus.stop()
        raise
    return prometheus
