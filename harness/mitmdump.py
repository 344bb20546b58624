"""Start and stop a real `mitmdump -s addon.py` process for end-to-end tests and the demo."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MITMDUMP = Path(sys.executable).parent / "mitmdump"
# The proxy's own line (mitmweb also prints "Web server listening at ...").
_LISTENING = re.compile(r"proxy.* listening at (?:http://)?\[?([0-9.:a-f]+)\]?:(\d+)")


def reverse_args(upstream_port: int, upstream_ca: Path, provider: str = "openai") -> list[str]:
    """mitmproxy arguments for reverse mode to the local fake upstream, metered as `provider`. The
    fake accepts `stream_options` as api.openai.com does, and its entry says so."""
    switch = ";stream_usage=on" if provider == "openai" else ""
    return [
        "--mode",
        f"reverse:https://127.0.0.1:{upstream_port}",
        "--set",
        f"ssl_verify_upstream_trusted_ca={upstream_ca}",
        "--set",
        f"genai_extra_hosts=127.0.0.1:{upstream_port}={provider}{switch}",
    ]


class Mitmdump:
    """`with Mitmdump([...args], env={...}) as proxy:` runs until the block ends (SIGINT, then kill)."""

    def __init__(
        self,
        args: Sequence[str],
        env: dict[str, str],
        confdir: Path,
        start_timeout: float = 20,
        with_addon: bool = True,
        program: str = "mitmdump",
        wrapper: Sequence[str] = (),
    ) -> None:
        """`with_addon=False` runs bare mitmdump, the baseline for benchmarks; `program="mitmweb"`
        runs the web interface instead; `wrapper` runs it under another program (valgrind)."""
        self.args = list(args)
        self.with_addon = with_addon
        self.program = program
        self.wrapper = list(wrapper)
        self.env = {**os.environ, **env}
        self.confdir = confdir
        self.start_timeout = start_timeout
        self.port = 0
        self.lines: list[str] = []
        self.exit_seconds: float | None = None
        self._process: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None
        self._listening = threading.Event()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ca_cert(self) -> Path:
        return self.confdir / "mitmproxy-ca-cert.pem"

    @property
    def pid(self) -> int:
        assert self._process
        return self._process.pid

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def start(self) -> Mitmdump:
        program = str(MITMDUMP.with_name(self.program))
        command = [
            *([*self.wrapper, sys.executable, program] if self.wrapper else [program]),
            *(["-s", str(ROOT / "addon.py")] if self.with_addon else []),
            "--listen-host",
            "127.0.0.1",
            "--listen-port",
            "0",
            "--set",
            f"confdir={self.confdir}",
            *self.args,
        ]
        self._process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
        )
        self._reader = threading.Thread(target=self._read, name="mitmdump-output", daemon=True)
        self._reader.start()
        if not self._listening.wait(self.start_timeout):
            self.stop()
            raise RuntimeError(f"mitmdump did not start:\n{self.output}")
        if "error in script" in self.output:
            self.stop()
            raise RuntimeError(f"the addon failed to load:\n{self.output}")
        return self

    def _read(self) -> None:
        assert self._process and self._process.stdout
        for line in self._process.stdout:
            self.lines.append(line.rstrip("\n"))
            if not self._listening.is_set() and (match := _LISTENING.search(line)):
                self.port = int(match.group(2))
                self._listening.set()

    def wait_for_line(self, pattern: str, timeout: float = 30) -> str:
        """The first output line matching `pattern`, waiting up to `timeout` seconds."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if regex.search(line):
                    return line
            time.sleep(0.05)
        raise TimeoutError(f"no line matching {pattern!r} in mitmdump output:\n{self.output}")

    def stop(self, timeout: float = 10) -> float:
        """SIGINT, as a user's Ctrl-C; kill if it hangs. Returns the seconds it took to exit."""
        assert self._process
        started = time.monotonic()
        if self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(5)
        self.exit_seconds = time.monotonic() - started
        if self._reader:
            self._reader.join(5)
        return self.exit_seconds

    def __enter__(self) -> Mitmdump:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
