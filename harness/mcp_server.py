"""A small MCP server over Streamable HTTP, with the official `mcp` SDK (its `MCPServer`), for the
end-to-end tests: `python -m harness.mcp_server PORT [--json]`. Two tools: `get_weather` answers,
`flaky` fails (its result has `isError`)."""

from __future__ import annotations

import sys

from mcp.server.mcpserver import MCPServer

server = MCPServer("e2e-weather")


@server.tool()
def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"12 degrees and raining in {city}"


@server.tool()
def flaky(reason: str) -> str:
    """Always fails."""
    raise RuntimeError(f"flaky failed: {reason}")


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]), json_response="--json" in sys.argv[2:])
