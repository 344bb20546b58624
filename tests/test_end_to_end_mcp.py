"""End to end for MCP over Streamable HTTP: the official `mcp` SDK's client calls a small MCP server
(`harness.mcp_server`, the SDK's own `MCPServer`) through a real mitmdump in reverse mode, the
server's host named in `genai_mcp_hosts`. Spans and the duration histogram by the MCP conventions,
the answers unchanged, a failing tool recorded as `tool_error`."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx2
import pytest
from mcp import Client

from harness.collector import free_port
from harness.e2e import World
from harness.mitmdump import ROOT, Mitmdump


@pytest.fixture(scope="module", params=["sse", "json"])
def mcp_server(request: pytest.FixtureRequest) -> Iterator[tuple[int, str]]:
    """The server, answering with SSE streams (the SDK's default) or with JSON."""
    port = free_port()
    command = [sys.executable, "-m", "harness.mcp_server", str(port), *(["--json"] if request.param == "json" else [])]
    server = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield port, request.param
    finally:
        server.terminate()
        server.wait(10)


@pytest.fixture(scope="module")
def proxy(world: World, mcp_server: tuple[int, str]) -> Iterator[Mitmdump]:
    port, kind = mcp_server
    args = ["--mode", f"reverse:http://127.0.0.1:{port}", "--set", f"genai_mcp_hosts=127.0.0.1:{port}"]
    with Mitmdump(args, world.env, world.tmp / f"conf-mcp-{kind}") as started:
        yield started


def calls(url: str, city: str) -> list[Any]:
    async def run() -> list[Any]:
        async with Client(url) as client:
            return [
                await client.call_tool("get_weather", {"city": city}),
                await client.call_tool("flaky", {"reason": city}),
            ]

    return asyncio.run(run())


def test_tool_calls_are_mcp_spans_and_durations_and_the_answers_are_unchanged(
    world: World, proxy: Mitmdump, mcp_server: tuple[int, str]
):
    port, kind = mcp_server
    city = f"Oslo-{kind}"
    through_proxy = calls(f"{proxy.url}/mcp", city)
    direct = calls(f"http://127.0.0.1:{port}/mcp", city)
    assert [r.model_dump() for r in through_proxy] == [r.model_dump() for r in direct]
    assert through_proxy[0].content[0].text == f"12 degrees and raining in {city}" and through_proxy[1].is_error

    def tool_spans() -> list[Any]:
        found = [
            s
            for s in world.receiver.spans()
            if s.attributes.get("server.port") == port and s.name.startswith("tools/call")
        ]
        return found if len(found) >= 2 else []

    weather, flaky = sorted(world.receiver.wait_for(tool_spans), key=lambda s: s.name)[::-1][:2]
    assert weather.name == "tools/call get_weather" and flaky.name == "tools/call flaky"
    assert weather.kind == 3  # CLIENT
    assert weather.attributes["mcp.method.name"] == "tools/call"
    assert weather.attributes["gen_ai.operation.name"] == "execute_tool"
    assert weather.attributes["gen_ai.tool.name"] == "get_weather"
    assert weather.attributes["jsonrpc.request.id"].isdigit()
    assert weather.attributes["mcp.protocol.version"]
    assert "error.type" not in weather.attributes
    assert flaky.attributes["error.type"] == "tool_error" and flaky.status_code == 2  # ERROR
    durations = world.receiver.wait_for(
        lambda: world.receiver.latest("mcp.client.operation.duration", gen_ai__tool__name="flaky")
    )
    assert all(point.attributes["error.type"] == "tool_error" for point in durations)
    # Not an LLM call: no token usage and no operation duration for the MCP server.
    llm = world.receiver.points("gen_ai.client.operation.duration")
    assert not [p for p in llm if p.attributes.get("server.port") == port]


def test_the_stateful_revision_names_its_session_and_version(world: World, proxy: Mitmdump):
    """A 2025-06-18 client, as older SDKs and agents speak it (raw JSON-RPC): `initialize` opens a
    session (`Mcp-Session-Id` on the answer), the calls after it carry it and the version."""
    accept = {"accept": "application/json, text/event-stream", "content-type": "application/json"}
    hello = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "initialize",
        "params": {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "e2e", "version": "1"}},
    }
    with httpx2.Client(base_url=proxy.url, timeout=30) as client:
        opened = client.post("/mcp", json=hello, headers=accept)
        session = opened.headers["mcp-session-id"]
        stateful = {**accept, "mcp-session-id": session, "mcp-protocol-version": "2025-06-18"}
        client.post("/mcp", json={"jsonrpc": "2.0", "method": "notifications/initialized"}, headers=stateful)
        call = {
            "jsonrpc": "2.0",
            "id": 2,
            "method": "tools/call",
            "params": {"name": "get_weather", "arguments": {"city": "Bergen"}},
        }
        answered = client.post("/mcp", json=call, headers=stateful)
    assert "Bergen" in answered.text

    def spans_of_session() -> list[Any]:
        return [s for s in world.receiver.spans() if s.attributes.get("mcp.session.id") == session]

    spans = world.receiver.wait_for(lambda: len(spans_of_session()) >= 3 and spans_of_session())
    by_method = {s.attributes["mcp.method.name"]: s for s in spans}
    assert set(by_method) == {"initialize", "notifications/initialized", "tools/call"}
    assert by_method["tools/call"].attributes["mcp.protocol.version"] == "2025-06-18"
    assert by_method["tools/call"].attributes["jsonrpc.request.id"] == "2"
    assert "jsonrpc.request.id" not in by_method["notifications/initialized"].attributes
