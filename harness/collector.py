"""The project's OpenTelemetry Collector (deploy/collector/), run with the deploy configuration.

`Collector(tmp)` runs `deploy/otel-collector.yaml` unchanged, plus an overlay file (the Collector
merges `--config` files in order, maps key by key, lists replaced) that re-points it to loopback:
OTLP/gRPC in on a free port, the Prometheus exporter on another, the deploy's `otlp/traces`
exporter to `traces_to` (a real OTLP receiver), and a file exporter per signal so that tests read
what left the Collector. `overrides` adds to the overlay (a memory limiter that refuses, say).
Set OTELCOL to use another Collector binary (an `otelcol-contrib` on the PATH, for example).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from harness.mitmdump import ROOT

CONFIG = ROOT / "deploy" / "otel-collector.yaml"
BUILT = ROOT / "deploy" / "collector" / "build" / "otelcol-genai"


def binary() -> Path:
    """The Collector to run: $OTELCOL, else the project's build (`make collector`)."""
    chosen = os.environ.get("OTELCOL")
    if chosen:
        found = shutil.which(chosen)
        if found is None:
            raise FileNotFoundError(f"OTELCOL={chosen} is not an executable")
        return Path(found)
    if not BUILT.exists():
        raise FileNotFoundError(f"{BUILT} is missing: run `make collector` (make test builds it)")
    return BUILT


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """`extra` over `base`, maps merged key by key: how the Collector merges its --config files."""
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge(merged[key], value)
        else:
            merged[key] = value
    return merged


class Collector:
    """A running Collector on loopback, until `stop` (or the `with` block ends)."""

    def __init__(self, tmp: Path, traces_to: str, overrides: dict[str, Any] | None = None, files: bool = True) -> None:
        """`files=False` leaves the file exporters out (the benchmark: they would cost the most)."""
        tmp.mkdir(parents=True, exist_ok=True)
        self.tmp = tmp
        self.otlp_port = free_port()
        self.prometheus_port = free_port()
        self.metrics_file = tmp / "metrics.jsonl"
        self.traces_file = tmp / "traces.jsonl"
        written = {"file/metrics": {"path": str(self.metrics_file)}, "file/traces": {"path": str(self.traces_file)}}
        written = written if files else {}
        overlay: dict[str, Any] = {
            "receivers": {"otlp": {"protocols": {"grpc": {"endpoint": f"127.0.0.1:{self.otlp_port}"}}}},
            "exporters": {
                "prometheus": {"endpoint": f"127.0.0.1:{self.prometheus_port}"},
                "otlp/traces": {"endpoint": traces_to.removeprefix("http://")},
                **written,
            },
            "service": {
                "pipelines": {
                    "metrics": {"exporters": ["prometheus", *[name for name in written if "metrics" in name]]},
                    "traces": {"exporters": ["otlp/traces", *[name for name in written if "traces" in name]]},
                },
                # The Collector's own metrics would listen on :8888 for every instance.
                "telemetry": {"metrics": {"level": "none"}},
            },
        }
        self.overlay = merge(overlay, overrides or {})
        self.overlay_file = tmp / "overlay.yaml"
        self.overlay_file.write_text(yaml.safe_dump(self.overlay))
        self.log = tmp / "collector.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        """What the proxies' OTEL_EXPORTER_OTLP_ENDPOINT names."""
        return f"http://127.0.0.1:{self.otlp_port}"

    @property
    def command(self) -> list[str]:
        return [str(binary()), f"--config={CONFIG}", f"--config={self.overlay_file}"]

    def start(self, timeout: float = 30) -> Collector:
        """Start (or start again, after `kill`) on the same ports; wait until it is ready."""
        written = self.log.stat().st_size if self.log.exists() else 0
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(self.command, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the Collector exited with {self.process.returncode}:\n{self.log.read_text()}")
            if "Everything is ready" in self.log.read_text()[written:]:
                return self
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"the Collector did not start:\n{self.log.read_text()}")

    @property
    def pid(self) -> int:
        assert self.process
        return self.process.pid

    def kill(self) -> None:
        """SIGKILL: a crash, nothing flushed."""
        assert self.process
        self.process.kill()
        self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(5)

    def scrape(self) -> str:
        """The Prometheus exporter's page, as Prometheus would scrape it."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.prometheus_port}/metrics", timeout=5) as response:
            return str(response.read().decode())

    def exported(self, name: Path) -> Iterator[dict[str, Any]]:
        """The OTLP/JSON requests the file exporter wrote to `name`, one per line (a line it is
        still writing is left for the next call)."""
        if name.exists():
            *complete, _ = name.read_text().split("\n")
            for line in complete:
                if line.strip():
                    yield json.loads(line)

    def __enter__(self) -> Collector:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def validate(config: Path = CONFIG) -> subprocess.CompletedProcess[str]:
    """`otelcol validate` on a configuration: what the Collector itself says of it."""
    return subprocess.run(
        [str(binary()), "validate", f"--config={config}"], capture_output=True, text=True, timeout=60, check=False
    )
