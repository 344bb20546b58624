"""The provider-neutral records every wire API parses into: usage, request, result.

Each API module maps its own field names into these; nothing downstream knows them.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

MODALITIES = ("text", "audio", "image")
# `WireApi.parse_response`'s headers when a caller has none (a body read on its own).
NO_HEADERS: Mapping[str, str] = MappingProxyType({})
# A span attribute's value, as the telemetry layer records it.
AttributeValue = str | bool | int | float | list[str]


def pickled_by_name[T](cls: type[T]) -> type[T]:
    """Pickle a slotted dataclass as its field names and values, restored through its constructor.

    Records cross the pipe to the telemetry process, which may have been started from other files
    (the schema check in the handshake refuses such a child; this is the second guard). By name, a
    value never lands in another field: an unknown name fails, a missing one takes its default. The
    names are one tuple per class, which pickle writes once per batch and refers back to after that.
    A slotted dataclass's own pickle is its values by position.
    """
    names = tuple(item.name for item in fields(cls))  # type: ignore[arg-type]
    # A tuple of the values (attrgetter of one name gives the value alone).
    values = operator.attrgetter(*names) if len(names) > 1 else lambda record: (getattr(record, names[0]),)

    def reduce(self: object) -> tuple[Any, ...]:
        return restored, (cls, names, values(self))

    setattr(cls, "__reduce__", reduce)  # noqa: B010 (mypy does not allow assigning methods)
    return cls


def restored[T](cls: type[T], names: tuple[str, ...], values: tuple[Any, ...]) -> T:
    """A record unpickled by `pickled_by_name`."""
    return cls(**dict(zip(names, values, strict=True)))


@pickled_by_name
@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens as billed, the same meaning for every API.

    `input_tokens` is all input: cache reads and cache writes are part of it (Anthropic reports
    them beside its `input_tokens`; its module adds them in, OpenAI's already includes them).
    `output_tokens` is all output, reasoning included. The others are parts of these totals,
    never to be added to them. Modality counts are given where the API reports them.
    """

    input_tokens: int | None = None
    output_tokens: int | None = None
    cache_read_tokens: int | None = None
    cache_write_tokens: int | None = None
    cache_write_5m_tokens: int | None = None  # of cache_write_tokens, where the API splits it
    cache_write_1h_tokens: int | None = None
    reasoning_tokens: int | None = None
    input_modalities: tuple[tuple[str, int], ...] = ()  # (modality, tokens), modality in MODALITIES
    output_modalities: tuple[tuple[str, int], ...] = ()
    cache_read_modalities: tuple[tuple[str, int], ...] = ()  # of cache_read_tokens (OpenAI's Realtime)

    @property
    def total_tokens(self) -> int:
        return (self.input_tokens or 0) + (self.output_tokens or 0)


@pickled_by_name
@dataclass(frozen=True, slots=True)
class ToolCall:
    """A tool the model asks the client to run (`wire.tools`): its result comes in a later request.
    Server-side tools (web search, code execution) run inside the response and are not these."""

    call_id: str  # the API's id; a Gemini call without one is known by its name
    name: str
    tool_type: str = "function"  # gen_ai.tool.type: function, or the API's kind (custom, local_shell)


@pickled_by_name
@dataclass(frozen=True, slots=True)
class ToolResult:
    """A tool's result a request sends back, for the call of this id (or name, `ToolCall.call_id`)."""

    call_id: str
    name: str | None = None  # where the API repeats it (Gemini, Ollama): matches a call by name
    error: bool = False  # the result says the tool failed (Anthropic's is_error, Converse's status)


@pickled_by_name
@dataclass(slots=True)
class ApiRequest:
    """What the client asked for, as far as telemetry cares."""

    model: str | None = None
    stream: bool = False
    include_usage: bool = False  # OpenAI's stream_options.include_usage
    temperature: float | None = None
    top_p: float | None = None
    top_k: float | None = None
    max_tokens: int | None = None
    frequency_penalty: float | None = None
    presence_penalty: float | None = None
    stop_sequences: list[str] | None = None
    seed: int | None = None
    choice_count: int | None = None
    service_tier: str | None = None
    output_type: str | None = None
    encoding_formats: list[str] | None = None
    dimensions: int | None = None
    conversation_id: str | None = None  # the Responses API's conversation (Anthropic's API has none)
    agent_session: str | None = None  # the agent session the body names (Claude Code's; `wire.agents`)
    previous_response_id: str | None = None
    input_characters: int | None = None  # text to speech: the input's length, what tts-1 bills
    # The tools' results this request sends back: those of its newest turn only (`wire.tools`).
    tool_results: tuple[ToolResult, ...] = ()
    # The API's own span attributes, named without its vendor's namespace (`request.voice`,
    # `request.thinking.budget_tokens`): the telemetry layer puts them under it (a `gen_ai.` name,
    # one of the conventions', stays as it is).
    attributes: dict[str, AttributeValue] = field(default_factory=dict)


@pickled_by_name
@dataclass(slots=True)
class ApiResult:
    """What the upstream answered, from a JSON body or a whole stream."""

    response_id: str | None = None
    response_model: str | None = None
    finish_reasons: list[str] = field(default_factory=list)
    usage: Usage | None = None
    # What is billed, where the provider bills other counts than the model processed (Cohere's
    # `billed_units`); the cost is computed from it. None: the usage is what is billed.
    billed_usage: Usage | None = None
    service_tier: str | None = None
    error_type: str | None = None
    # Server-side tool uses billed per request (Anthropic's web search and fetch), by tool.
    server_tool_requests: dict[str, int] = field(default_factory=dict)
    audio_seconds: float | None = None  # speech to text billed by duration (whisper-1)
    tool_calls: tuple[ToolCall, ...] = ()  # the tools the answer asks the client to run
    # A successful answer's body was not what the API sends (not JSON): nothing could be read from it.
    unreadable: bool = False
    # The API's own span attributes, named without its vendor's namespace (`response.system_fingerprint`).
    attributes: dict[str, AttributeValue] = field(default_factory=dict)
