"""The recorded exchanges in tests/fixtures (VCR cassettes), read as plain requests and responses."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
ANTHROPIC = FIXTURES / "recorded-anthropic"
GEMINI = FIXTURES / "recorded-gemini"
BEDROCK = FIXTURES / "recorded-bedrock"


@dataclass(frozen=True)
class Recording:
    name: str
    method: str
    uri: str
    request_headers: dict[str, str]  # lower-case names, first value
    request_body: bytes
    status: int
    response_headers: dict[str, str]
    response_body: bytes

    @property
    def streamed(self) -> bool:
        content_type = self.response_headers.get("content-type", "")
        return content_type.startswith(("text/event-stream", "application/vnd.amazon.eventstream"))


def _headers(raw: dict[str, list[str]] | None) -> dict[str, str]:
    return {name.lower(): value[0] if isinstance(value, list) else str(value) for name, value in (raw or {}).items()}


def _bytes(body: str | bytes | None) -> bytes:
    """A body as stored: text, or bytes (`!!binary`: Bedrock's event streams)."""
    return body if isinstance(body, bytes) else (body or "").encode()


@cache
def load(folder: Path, name: str, number: int = 0) -> Recording:
    """Interaction `number` (the first by default) of `folder/NAME.yaml`."""
    with open(folder / f"{name}.yaml", encoding="utf-8") as file:
        interaction = yaml.safe_load(file)["interactions"][number]
    request, response = interaction["request"], interaction["response"]
    return Recording(
        name=name,
        method=request["method"],
        uri=request["uri"],
        request_headers=_headers(request.get("headers")),
        request_body=_bytes(request.get("body")),
        status=response["status"]["code"],
        response_headers=_headers(response.get("headers")),
        response_body=_bytes(response["body"]["string"]),
    )


def names(folder: Path) -> list[str]:
    return sorted(path.stem for path in folder.glob("*.yaml"))


def load_anthropic(name: str) -> Recording:
    return load(ANTHROPIC, name)


ANTHROPIC_NAMES = names(ANTHROPIC)


def load_gemini(name: str) -> Recording:
    return load(GEMINI, name)


GEMINI_NAMES = names(GEMINI)


def load_bedrock(name: str, number: int = 0) -> Recording:
    return load(BEDROCK, name, number)


def bedrock_stream(name: str, number: int = 0) -> bytes:
    return load_bedrock(name, number).response_body


BEDROCK_NAMES = names(BEDROCK)


OLLAMA = FIXTURES / "recorded-ollama"


@dataclass(frozen=True)
class HttprrExchange:
    """One exchange of an httprr trace (tmc/langchaingo's recorder): the raw HTTP/1.1 messages."""

    method: str
    uri: str
    request_headers: dict[str, str]  # lower-case names
    request_body: bytes
    status: int
    response_headers: dict[str, str]
    response_body: bytes  # de-chunked, as the client reads it


def _http_message(raw: bytes) -> tuple[str, dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("utf-8", "replace").replace("\r\n", "\n").split("\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = _dechunked(body)
    return lines[0], headers, body


def _dechunked(body: bytes) -> bytes:
    out, position = bytearray(), 0
    while True:
        end = body.index(b"\r\n", position)
        size = int(body[position:end].split(b";")[0], 16)
        if size == 0:
            return bytes(out)
        out += body[end + 2 : end + 2 + size]
        position = end + 2 + size + 2


@cache
def load_httprr(path: Path) -> list[HttprrExchange]:
    data = path.read_bytes()
    header, _, rest = data.partition(b"\n")
    assert header.strip() == b"httprr trace v1"
    exchanges = []
    while rest:
        sizes, _, rest = rest.partition(b"\n")
        request_size, response_size = (int(n) for n in sizes.split())
        request, response = rest[:request_size], rest[request_size : request_size + response_size]
        rest = rest[request_size + response_size :]
        request_line, request_headers, request_body = _http_message(request)
        status_line, response_headers, response_body = _http_message(response)
        method, uri, _ = request_line.split(" ", 2)
        exchanges.append(
            HttprrExchange(
                method,
                uri,
                request_headers,
                request_body,
                int(status_line.split(" ")[1]),
                response_headers,
                response_body,
            )
        )
    return exchanges


def load_ollama(name: str) -> HttprrExchange:
    return load_httprr(OLLAMA / f"{name}.httprr")[0]


OLLAMA_NAMES = sorted(path.stem for path in OLLAMA.glob("*.httprr"))
