"""The end-to-end world the tests share: a fake upstream (OpenAI's and Anthropic's APIs), a
CONNECT forwarder, a real OTLP/gRPC receiver, and two real mitmdumps with the addon: reverse mode
toward the fake, and regular mode (HTTPS_PROXY) whose every tunnel the forwarder ends at the fake.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from harness.certs import PKI, make_pki
from harness.connect_forwarder import ConnectForwarder
from harness.fake_openai import FakeUpstream
from harness.mitmdump import Mitmdump, reverse_args
from harness.otlp_receiver import OTLPReceiver

SECRET = "Xw9Qm2Lk7Rt4Vb8Np3Hs6Jd1Fg5Zc0Ya"
KEY = f"sk-proj-{SECRET}"


@dataclass
class World:
    tmp: Path
    pki: PKI
    receiver: OTLPReceiver
    fake: FakeUpstream
    forwarder: ConnectForwarder
    reverse: Mitmdump
    regular: Mitmdump
    env: dict[str, str]

    def proxy_args(self, *extra: str) -> list[str]:
        return [*reverse_args(self.fake.port, self.pki.ca_cert), *extra]

    def reverse_client(self, proxy: Mitmdump | None = None) -> openai.OpenAI:
        return openai.OpenAI(base_url=f"{(proxy or self.reverse).url}/v1", api_key=KEY, max_retries=0)

    def direct_client(self) -> openai.OpenAI:
        """Straight to the fake upstream, no proxy: what the client would get without us."""
        return openai.OpenAI(
            base_url=f"https://127.0.0.1:{self.fake.port}/v1",
            api_key=KEY,
            max_retries=0,
            http_client=openai.DefaultHttpxClient(
                verify=ssl.create_default_context(cafile=str(self.pki.ca_cert)), trust_env=False
            ),
        )


@contextlib.contextmanager
def started_world(tmp: Path) -> Iterator[World]:
    """The fake upstream, the CONNECT forwarder, the receiver and both proxies, until the block ends."""
    pki = make_pki(tmp / "pki")
    receiver = OTLPReceiver().start()
    env = {
        "OTEL_EXPORTER_OTLP_ENDPOINT": receiver.endpoint,
        "OTEL_METRIC_EXPORT_INTERVAL": "300",
        "OTEL_BSP_SCHEDULE_DELAY": "100",
        "OTEL_SERVICE_NAME": "e2e-proxy",
    }
    with FakeUpstream(pki.server_cert, pki.server_key) as fake, ConnectForwarder(fake.port) as forwarder:
        world = World(tmp, pki, receiver, fake, forwarder, None, None, env)  # type: ignore[arg-type]
        world.reverse = Mitmdump(world.proxy_args(), env, tmp / "conf-reverse").start()
        world.regular = Mitmdump(
            [
                "--mode",
                f"upstream:http://127.0.0.1:{forwarder.port}",
                "--set",
                f"ssl_verify_upstream_trusted_ca={pki.ca_cert}",
            ],
            env,
            tmp / "conf-regular",
        ).start()
        try:
            yield world
        finally:
            world.reverse.stop()
            world.regular.stop()
            receiver.stop()


def tokens(world: World, model: str, token_type: str, instance: str | None = None) -> float:
    points = world.receiver.latest("gen_ai.client.token.usage", gen_ai__request__model=model)
    return sum(
        p.value
        for p in points
        if p.attributes["gen_ai.token.type"] == token_type
        and (instance is None or p.resource["service.instance.id"] == instance)
    )


def wait_for_tokens(world: World, model: str, input_tokens: float, output_tokens: float) -> None:
    world.receiver.wait_for(
        lambda: tokens(world, model, "input") == input_tokens and tokens(world, model, "output") == output_tokens
    )


def spans_where(world: World, predicate: Callable[[Any], bool], count: int = 1) -> list[Any]:
    """The spans received that match `predicate`, once there are `count` of them."""
    return world.receiver.wait_for(
        lambda: (found := [s for s in world.receiver.spans() if predicate(s)]) and len(found) >= count and found
    )


def spans_for(world: World, model: str, count: int = 1) -> list[Any]:
    return spans_where(world, lambda s: s.attributes.get("gen_ai.request.model") == model, count)


def export_mark(world: World) -> tuple[int, int]:
    """How many metric and trace requests the receiver holds now (see `exported_since`)."""
    return len(world.receiver.metric_requests), len(world.receiver.trace_requests)


def exported_since(world: World, mark: tuple[int, int]) -> str:
    """Everything exported since `mark`, as text: a module's own exports, to search for secrets
    without scanning what every module before it exported."""
    requests = world.receiver.metric_requests[mark[0] :] + world.receiver.trace_requests[mark[1] :]
    return "".join(str(request) for request in requests)
