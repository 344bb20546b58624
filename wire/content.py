"""Captured prompts and completions (opt-in) in the GenAI conventions' message shape.

Parts: `text`, `reasoning`, `tool_call`, `tool_call_response`, and media by type only (an image,
audio or a document is named, never copied).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from wire.values import dump, label, obj

# Longest text kept per message part, and the most parts kept, when content capture is on.
MAX_PART_CHARS = 16_384
MAX_PARTS = 256
TRUNCATED = "…[truncated]"

Part = dict[str, Any]


@dataclass
class CapturedContent:
    """Prompt and completion as JSON strings for span attributes."""

    system_instructions: str | None = None
    input_messages: str | None = None
    output_messages: str | None = None


def capped(text: Any) -> str:
    content = text if isinstance(text, str) else str(text)
    return content[:MAX_PART_CHARS] + TRUNCATED if len(content) > MAX_PART_CHARS else content


def role_of(message: Any, default: str = "user") -> str:
    """A message's role, bounded like every label (a client chooses it)."""
    return label(message.get("role") if isinstance(message, dict) else None) or default


def text_part(text: Any, kind: str = "text") -> Part:
    return {"type": kind, "content": capped(text)}


def media_part(kind: Any) -> Part:
    return {"type": str(kind)[:64]}


def tool_call_part(call_id: Any, name: Any, arguments: Any) -> Part:
    if not isinstance(arguments, str):
        arguments = json.dumps(arguments, ensure_ascii=False)
    return {"type": "tool_call", "id": label(call_id), "name": label(name), "arguments": arguments[:MAX_PART_CHARS]}


def tool_response_part(call_id: Any, response: Any) -> Part:
    return {"type": "tool_call_response", "id": label(call_id), "response": capped(response)}


def openai_content_parts(content: Any) -> list[Part]:
    """OpenAI chat or Responses content (a string or a list of typed parts) as convention parts."""
    if isinstance(content, str):
        return [text_part(content)] if content else []
    parts = []
    for part in content if isinstance(content, list) else []:
        if not isinstance(part, dict):
            continue
        kind = str(part.get("type", ""))
        text = part.get("text", part.get("refusal"))
        if isinstance(text, str):
            parts.append(text_part(text))
        elif kind:  # images, audio, files: say what was there, not the data
            parts.append(media_part(kind))
    return parts


def openai_tool_call_part(call: dict[str, Any]) -> Part:
    function = obj(call.get("function"))
    return tool_call_part(
        call.get("id") or call.get("call_id"),
        function.get("name") or call.get("name"),
        str(function.get("arguments", call.get("arguments", ""))),
    )


def dump_messages(value: list[Any]) -> str | None:
    return dump(value[:MAX_PARTS]) if value else None


class TextCollector:
    """Streamed text of one part, kept up to the part size cap."""

    def __init__(self) -> None:
        self.pieces: list[str] = []
        self.size = 0

    def add(self, text: str) -> None:
        if self.size <= MAX_PART_CHARS:
            self.pieces.append(text)
            self.size += len(text)

    def text(self) -> str:
        return "".join(self.pieces)


class PartsCollector:
    """The parts of one streamed message, in order: consecutive pieces of text (or of reasoning)
    joined into one part, tool calls and media kept whole; a tool call's arguments may arrive in
    pieces after it (`add_tool_arguments`). At most MAX_PARTS parts."""

    def __init__(self) -> None:
        self._parts: list[tuple[str, TextCollector | Part]] = []

    def add_text(self, piece: Any, kind: str = "text") -> None:
        if not isinstance(piece, str) or not piece:
            return
        last = self._parts[-1] if self._parts else None
        if last is None or last[0] != kind or not isinstance(last[1], TextCollector):
            if len(self._parts) >= MAX_PARTS:
                return
            last = (kind, TextCollector())
            self._parts.append(last)
        collector = last[1]
        assert isinstance(collector, TextCollector)
        collector.add(piece)

    def add(self, part: Part) -> None:
        if len(self._parts) < MAX_PARTS:
            self._parts.append((part["type"], part))

    def add_tool_arguments(self, piece: Any) -> None:
        """More of the last tool call's arguments (a streamed tool call)."""
        last = self._parts[-1][1] if self._parts else None
        if isinstance(last, dict) and last.get("type") == "tool_call" and isinstance(piece, str):
            last["arguments"] = (last["arguments"] + piece)[:MAX_PART_CHARS]

    def message(self, finish_reasons: list[str]) -> str | None:
        """The one assistant message these parts make, as captured output; None without parts."""
        if not self._parts:
            return None
        reason = finish_reasons[0] if finish_reasons else "stop"
        return dump_messages([{"role": "assistant", "parts": self.parts(), "finish_reason": reason}])

    def parts(self) -> list[Part]:
        return [
            text_part(piece.text(), kind) if isinstance(piece, TextCollector) else piece for kind, piece in self._parts
        ]
