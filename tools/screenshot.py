"""Regenerate docs/mitmweb.png, the README's picture of mitmweb with the addon.

Needs Chromium (Debian: apt-get install chromium). Run: .venv/bin/python -m tools.screenshot
It starts the demo's fake upstream and mitmweb with the addon, makes a few SDK calls, opens the
streamed call in the LLM stream view (an Anthropic call is in the list too) and saves a headless screenshot.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path

import anthropic
import openai
from openai.types.chat import ChatCompletionMessageParam

from harness.certs import make_pki
from harness.fake_openai import FakeUpstream
from harness.mitmdump import ROOT, Mitmdump, reverse_args

PASSWORD = "screenshot"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="genai-screenshot-"))
    pki = make_pki(tmp / "pki")
    web_port = free_port()
    env = {"OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none"}
    with FakeUpstream(pki.server_cert, pki.server_key) as fake:
        args = [*reverse_args(fake.port, pki.ca_cert), "--web-host", "127.0.0.1"]
        args += ["--web-port", str(web_port), "--set", f"web_password={PASSWORD}", "--set", "web_open_browser=false"]
        args += [f"--set=web_columns={column}" for column in ("icon", "path", "status", "time", "comment")]
        with Mitmdump(args, env, tmp / "conf", program="mitmweb") as proxy:
            client = openai.OpenAI(base_url=f"{proxy.url}/v1", api_key="sk-proj-" + "0" * 44 + "WXYZ", max_retries=0)
            question: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say this is a test"}]
            client.chat.completions.create(model="gpt-4o-mini", messages=question)
            knobs = {"x-fake-chunks": "5", "x-fake-cached-tokens": "8"}
            list(
                client.chat.completions.create(model="gpt-4o-mini", messages=question, stream=True, extra_headers=knobs)
            )
            client.embeddings.create(model="text-embedding-3-small", input=["one two three"])
            claude = anthropic.Anthropic(base_url=proxy.url, api_key="sk-ant-api03-" + "0" * 80 + "WXYZ", max_retries=0)
            with claude.messages.stream(
                model="claude-sonnet-4-6", max_tokens=64, messages=[{"role": "user", "content": "Say hello"}]
            ) as stream:
                stream.get_final_message()
            claude.close()
            with contextlib.suppress(openai.RateLimitError):
                error = {"x-fake-error": "429:rate_limit_exceeded"}
                client.chat.completions.create(model="gpt-4.1", messages=question, extra_headers=error)
            client.close()
            request = urllib.request.Request(
                f"http://127.0.0.1:{web_port}/flows", headers={"Authorization": f"Bearer {PASSWORD}"}
            )
            with urllib.request.urlopen(request, timeout=10) as response:
                flows = json.loads(response.read())
            streamed = flows[1]["id"]
            url = f"http://127.0.0.1:{web_port}/?token={PASSWORD}#/flows/{streamed}/response"
            subprocess.run(
                [
                    "chromium",
                    "--headless",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-background-networking",
                    "--disable-component-update",
                    "--disable-sync",
                    "--no-first-run",
                    f"--user-data-dir={tmp / 'chrome'}",
                    "--window-size=1600,760",
                    "--virtual-time-budget=8000",
                    "--hide-scrollbars",
                    f"--screenshot={ROOT / 'docs' / 'mitmweb.png'}",
                    url,
                ],
                check=True,
                timeout=120,
                capture_output=True,
            )
            time.sleep(0.5)
    print(f"wrote {ROOT / 'docs' / 'mitmweb.png'}")


if __name__ == "__main__":
    main()
