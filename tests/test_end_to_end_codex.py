"""One turn of the real Codex CLI (0.171, `codex exec`, headless; `make test` installs it with npm
from harness/codex) through a real mitmdump in regular mode (`HTTPS_PROXY`, the mitmproxy CA in
`SSL_CERT_FILE`). Codex first upgrades `GET /v1/responses` to a WebSocket (`openai-beta:
responses_websockets=…`); the CONNECT forwarder ends that tunnel at the fake WebSocket upstream,
which answers every `response.create` as the Responses API does. Each one must be metered once,
with the usage the fake sent, under one session span; no key anywhere."""

import json
import os
import subprocess
import time
from pathlib import Path

from harness.connect_forwarder import ConnectForwarder
from harness.e2e import World
from harness.fake_openai import ResponsesScript
from harness.fake_realtime import FakeSockets
from harness.mitmdump import ROOT, Mitmdump

CODEX = ROOT / "harness" / "codex" / "node_modules" / ".bin" / "codex"
KEY = "sk-proj-CodexE2eKey7Hq2Lp9Wm4Xn6Rt1Vb3Zc8"


def test_a_codex_turn_over_the_responses_websocket_is_metered_exactly(world: World, tmp_path: Path):
    home = tmp_path / "home"
    (home / ".codex").mkdir(parents=True)
    with (
        FakeSockets(world.pki.server_cert, world.pki.server_key) as sockets,
        ConnectForwarder(sockets.port) as forwarder,
    ):
        args = ["--mode", f"upstream:http://127.0.0.1:{forwarder.port}"]
        args += ["--set", f"ssl_verify_upstream_trusted_ca={world.pki.ca_cert}"]
        with Mitmdump(args, world.env, world.tmp / "conf-codex") as proxy:
            environment = {
                "PATH": os.environ["PATH"],
                "HOME": str(home),
                "CODEX_HOME": str(home / ".codex"),
                "OPENAI_API_KEY": KEY,
                "HTTPS_PROXY": proxy.url,
                "HTTP_PROXY": proxy.url,
                "SSL_CERT_FILE": str(proxy.ca_cert),
            }
            finished = subprocess.run(
                [str(CODEX), "exec", "--skip-git-repo-check", "-c", 'model="e2e-codex"', "Say hi"],
                env=environment,
                cwd=tmp_path,
                capture_output=True,
                text=True,
                timeout=120,
            )
            assert finished.returncode == 0, finished.stderr[-3000:]
            (session,) = [s for s in sockets.sessions if s.path == "/v1/responses"]
            assert session.headers["openai-beta"].startswith("responses_websockets=")
            asked = [json.loads(text) for text in session.received if '"response.create"' in text[:40]]
            assert asked, "Codex sent no response.create"
            spans = world.receiver.wait_for(
                lambda: (
                    (
                        found := [
                            s
                            for s in world.receiver.spans()
                            if s.attributes.get("gen_ai.request.model") == "e2e-codex"
                            and "gen_ai.response.id" in s.attributes
                        ]
                    )
                    and len(found) >= len(asked)
                    and found
                )
            )
            time.sleep(0.5)
            logs = proxy.output
    assert "api.openai.com:443" in forwarder.tunnels
    assert len(spans) == len(asked)  # each response.create metered once
    for span, request in zip(sorted(spans, key=lambda s: s.start_time_unix_nano), asked, strict=True):
        usage = ResponsesScript({k: v for k, v in request.items() if k != "type"}).response()["usage"]
        assert span.attributes["gen_ai.usage.input_tokens"] == usage["input_tokens"]
        assert span.attributes["gen_ai.usage.output_tokens"] == usage["output_tokens"]
        assert span.attributes["openai.api.type"] == "responses"
        assert span.attributes["user_agent.name"] == "codex_exec"
        # Codex names its session in the upgrade request (`session-id`): each call's conversation.
        assert span.attributes["gen_ai.conversation.id"] == session.headers["session-id"]
        assert span.attributes["gen_ai.agent.name"] == "codex_exec"
    (session_span,) = [s for s in world.receiver.spans() if s.name == "responses e2e-codex"]
    assert {s.parent_span_id for s in spans} == {session_span.span_id}
    exported = "".join(str(r) for r in world.receiver.trace_requests + world.receiver.metric_requests)
    assert KEY[8:20] not in exported and KEY[8:20] not in logs
    assert "hook failed" not in logs
