"""The recorded exchanges in tests/fixtures (VCR cassettes), read as plain requests and responses."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

import yaml

FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
ANTHROPIC = FIXTURES / "recorded-anthropic"
GEMINI = FIXTURES / "recorded-gemini"


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
        return self.response_headers.get("content-type", "").startswith("text/event-stream")


def _headers(raw: dict[str, list[str]] | None) -> dict[str, str]:
    return {name.lower(): value[0] if isinstance(value, list) else str(value) for name, value in (raw or {}).items()}


@cache
def load(folder: Path, name: str) -> Recording:
    """The first interaction of `folder/NAME.yaml`."""
    with open(folder / f"{name}.yaml", encoding="utf-8") as file:
        interaction = yaml.safe_load(file)["interactions"][0]
    request, response = interaction["request"], interaction["response"]
    return Recording(
        name=name,
        method=request["method"],
        uri=request["uri"],
        request_headers=_headers(request.get("headers")),
        request_body=(request.get("body") or "").encode(),
        status=response["status"]["code"],
        response_headers=_headers(response.get("headers")),
        response_body=response["body"]["string"].encode(),
    )


def names(folder: Path) -> list[str]:
    return sorted(path.stem for path in folder.glob("*.yaml"))


def load_anthropic(name: str) -> Recording:
    return load(ANTHROPIC, name)


ANTHROPIC_NAMES = names(ANTHROPIC)


def load_gemini(name: str) -> Recording:
    return load(GEMINI, name)


GEMINI_NAMES = names(GEMINI)
