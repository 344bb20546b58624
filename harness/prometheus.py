"""A real Prometheus (Debian's package) on loopback, and the PromQL the project hands its users:
the README's `promql` blocks, the recording and alerting rules, the dashboard's panels."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from harness.collector import free_port
from harness.mitmdump import ROOT

DEPLOY = ROOT / "deploy"
# The dashboard's variables as a user who picked "All" would have them.
DASHBOARD_VARIABLES = {"$__rate_interval": "1m", "$provider": ".*", "$model": ".*", "$instance": ".*"}


class Prometheus:
    """A real Prometheus on loopback with a temporary data directory, until `stop`."""

    def __init__(self, tmp: Path, target_port: int, honor_labels: bool = False) -> None:
        """`honor_labels`: keep the target's own `job` and `instance` labels, as deploy/prometheus.yml
        does for the Collector (whose series carry each proxy's)."""
        binary = shutil.which("prometheus")
        if binary is None:
            raise FileNotFoundError(
                "prometheus is not installed: .ci/run installs Debian's package (apt-get install prometheus)"
            )
        tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        scrape: dict[str, Any] = {
            "job_name": "mitmproxy-genai",
            "static_configs": [{"targets": [f"127.0.0.1:{target_port}"]}],
            "honor_labels": honor_labels,
        }
        config = {
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "rule_files": [str(DEPLOY / "prometheus-rules.yaml")],
            "scrape_configs": [scrape],
        }
        (tmp / "prometheus.yml").write_text(yaml.safe_dump(config))
        self.process = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/-/ready", timeout=1) as response:
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        self.stop()
        raise RuntimeError("Prometheus did not become ready")

    def query(self, expr: str) -> list[dict[str, Any]]:
        """An instant query; raises with Prometheus's own error for an expression it refuses."""
        url = f"http://127.0.0.1:{self.port}/api/v1/query?" + urllib.parse.urlencode({"query": expr})
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise AssertionError(f"Prometheus refused {expr!r}: {error.read().decode()}") from error
        assert answer["status"] == "success", answer
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def values(self, expr: str, by: str) -> dict[str, float]:
        return {sample["metric"].get(by, ""): float(sample["value"][1]) for sample in self.query(expr)}

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)


def readme_expressions() -> list[str]:
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```promql\n(.*?)```", readme, re.S)
    return [line.split("  #")[0].strip() for block in blocks for line in block.splitlines() if line.strip()]


def rule_expressions() -> list[str]:
    rules = yaml.safe_load((DEPLOY / "prometheus-rules.yaml").read_text())
    return [rule["expr"] for group in rules["groups"] for rule in group["rules"]]


def dashboard_expressions() -> list[str]:
    dashboard = json.loads((DEPLOY / "grafana" / "genai-dashboard.json").read_text())
    expressions = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    for name, value in DASHBOARD_VARIABLES.items():
        expressions = [expr.replace(name, value) for expr in expressions]
    return expressions


def wait_until(predicate: Callable[..., Any], timeout: float = 20) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.5)
