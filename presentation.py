"""How the addon shows calls in mitmproxy: the per-call log line, each flow's comment and mark
(mitmweb's comment column, the console's flow list), and mitmweb's view of a metered stream.

The line and the comment are made where the call is parsed and priced, in the telemetry process
(`wire.describe.Description`), so that mitmproxy's event loop parses nothing to show a call. They
come back here: `ShownCalls` remembers which flow waits for which description and applies it on
the event loop when it arrives, a few milliseconds after the flow's own line.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import sys
import textwrap
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence

from mitmproxy import contentviews, ctx, hooks, http

import wire
from wire.call import Endpoint
from wire.describe import Description, describe_stream

log = logging.getLogger("genai")

# In the flow's metadata (kept with saved flows): the addon asked the upstream for usage the client
# did not ask for, and took it out of the client's stream again. The stream view says so.
USAGE_REMOVED = "genai_usage_removed"
# The stream view's "metered:" line is wrapped at this width.
STREAM_VIEW_WIDTH = 100
# Flows waiting for their description at most: a telemetry process that died takes its answers
# with it, and their flows must not be kept here for ever.
MAX_WAITING = 10_000


class ShownCalls:
    """The flows whose calls are shown, until their description arrives from telemetry."""

    def __init__(self, max_waiting: int = MAX_WAITING, watching: Callable[[], bool] | None = None) -> None:
        """`watching`: do flow views need to hear of changed comments now (default: `_someone_watches`)."""
        self.log_lines = True  # mitmdump's flow_detail > 0: a log line per call, like its own
        # Flows outlive the call (mitmweb, the console, -w): views hear of each comment (it is set
        # whenever the call is shown).
        self.flows_kept = False
        self._max_waiting = max_waiting
        self._watching = watching or _someone_watches
        self._waiting: OrderedDict[int, tuple[http.HTTPFlow, int | None]] = OrderedDict()
        self._numbers = itertools.count(1)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None

    @property
    def wanted(self) -> bool:
        return self.log_lines or self.flows_kept

    @property
    def waiting(self) -> int:
        """Flows waiting for their description."""
        return len(self._waiting)

    def on_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        """Descriptions from other threads are applied on this loop, mitmproxy's."""
        self._loop, self._loop_thread = loop, threading.get_ident()

    def expect(self, flow: http.HTTPFlow, session_calls: int | None = None) -> int:
        """The number a call of `flow` is described under (`Call.description_id`). `session_calls`:
        the call is an operation of the WebSocket session `flow`, its `session_calls`th.

        The flow waits for its comment only where flows are kept: elsewhere mitmdump drops a flow
        once it is done, nobody sees the comment, and holding the flow would only keep it alive."""
        number = next(self._numbers)
        if self.flows_kept:
            self._waiting[number] = (flow, session_calls)
            if len(self._waiting) > self._max_waiting:
                self._waiting.popitem(last=False)
        return number

    def arrived(self, descriptions: Sequence[Description]) -> None:
        """From any thread: apply `descriptions` on mitmproxy's loop (one wake-up for them all)."""
        loop = self._loop
        if loop is not None and threading.get_ident() != self._loop_thread:
            if not loop.is_closed():
                loop.call_soon_threadsafe(self.show, descriptions)
            return
        self.show(descriptions)

    def show(self, descriptions: Sequence[Description]) -> None:
        updated, lines = [], []
        for description in descriptions:
            text = description.text
            lines.append(f"genai: {text}")
            waiting = self._waiting.pop(description.call_id, None)
            if waiting is None:
                continue
            flow, session_calls = waiting
            if description.failed:
                flow.marked = ":warning:"
            flow.comment = text if session_calls is None else f"{session_calls} calls · last: {text}"
            updated.append(flow)
        if self.log_lines and lines:  # like mitmproxy's own flow lines: quiet at flow_detail=0
            # One record for the batch: a record costs mitmdump as much as a tenth of a request
            # (bench part 7), whatever its length.
            log.info("%s", "\n".join(lines))
        if self.flows_kept and updated and self._watching():
            ctx.master.addons.trigger(hooks.UpdateHook(updated))  # mitmweb shows the new comments now


def _someone_watches() -> bool:
    """Do the flow views need to hear of changed comments now? mitmweb turns every updated flow
    into JSON for its browsers, even when none is connected (a browser that connects later loads
    the flows, comments included); the console redraws its list."""
    web = sys.modules.get("mitmproxy.tools.web.app")
    return web is None or bool(web.ClientConnection.connections)


class LLMStreamView(contentviews.Contentview):
    """mitmweb's view of a metered stream: the reassembled answer, thinking, tool calls and usage."""

    name = "LLM stream"

    def prettify(self, data: bytes, metadata: contentviews.Metadata) -> str:
        endpoint = _observed_endpoint(metadata)
        assert endpoint is not None
        usage_removed = bool(metadata.flow and metadata.flow.metadata.get(USAGE_REMOVED))
        description = describe_stream(endpoint, data, metadata.content_type or "", usage_removed)
        # What the addon metered, which includes usage it asked for and kept from the client.
        metered = metadata.flow.comment if metadata.flow else ""
        if not metered:
            return description
        # Wrapped: mitmweb shows a view's lines unwrapped, and a long one needs horizontal scrolling.
        return "\n         ".join(textwrap.wrap(f"metered: {metered}", STREAM_VIEW_WIDTH)) + f"\n{description}"

    def render_priority(self, data: bytes, metadata: contentviews.Metadata) -> float:
        endpoint = _observed_endpoint(metadata)
        content_type = (metadata.content_type or "").lower()
        is_stream = endpoint is not None and endpoint.api.stream_framer(content_type, endpoint) is not None
        return 2.0 if is_stream else 0.0


def _observed_endpoint(metadata: contentviews.Metadata) -> Endpoint | None:
    flow = metadata.flow
    if not isinstance(flow, http.HTTPFlow):
        return None
    return wire.endpoint_for(flow.request.method, flow.request.path)
