"""Which hosts are metered: `genai_hosts` entries, parsed and matched."""

from __future__ import annotations

import fnmatch
import ipaddress
import re
from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

DEFAULT_PROVIDER = "openai"
DEFAULT_HOSTS = [
    "api.openai.com=openai",
    "*.openai.azure.com=azure.ai.openai",
    "*.cognitiveservices.azure.com=azure.ai.openai",
    "api.anthropic.com=anthropic",
    "api.groq.com=groq",
    "api.deepseek.com=deepseek",
    "api.mistral.ai=mistral_ai",
    "api.x.ai=x_ai",
    "api.perplexity.ai=perplexity",
    "openrouter.ai=openrouter",
    # Google: the Gemini API (its own dialect, and OpenAI's under /v1beta/openai/), Vertex AI.
    "generativelanguage.googleapis.com=gcp.gemini",
    "cloudcode-pa.googleapis.com=gcp.gemini",  # Code Assist: Gemini CLI logged in with Google
    "aiplatform.googleapis.com=gcp.vertex_ai",
    "*-aiplatform.googleapis.com=gcp.vertex_ai",
    "aiplatform.*.rep.googleapis.com=gcp.vertex_ai",
    # AWS Bedrock Runtime (its FIPS endpoints too).
    "bedrock-runtime.*.amazonaws.com=aws.bedrock",
    "bedrock-runtime-fips.*.amazonaws.com=aws.bedrock",
    # OpenAI-compatible hosts (and their Anthropic-compatible paths, where they serve them).
    "api.together.xyz=together",
    "api.fireworks.ai=fireworks",
    "api.cerebras.ai=cerebras",
    "api.moonshot.ai=moonshot_ai",
    "api.moonshot.cn=moonshot_ai",
    "router.huggingface.co=huggingface",
    "*.azuredatabricks.net=databricks",
    "*.snowflakecomputing.com=snowflake",
    "api.z.ai=z_ai",
    "api.cloudflare.com=cloudflare",
    "api.inference.crusoecloud.com=crusoe",
    "us.inference.heroku.com=heroku",
    # Bedrock's OpenAI- and Anthropic-compatible surface.
    "bedrock-mantle.*.api.aws=aws.bedrock",
    # Cohere's own API (its v2 chat and embed).
    "api.cohere.com=cohere",
    "api.cohere.ai=cohere",
    # Ollama: local (its native /api/... and OpenAI-compatible /v1/... routes; local calls cost 0),
    # and Ollama's cloud.
    "localhost:11434=ollama",
    "127.0.0.1:11434=ollama",
    "[::1]:11434=ollama",
    "ollama.com=ollama.cloud",
]


@dataclass(frozen=True)
class HostRule:
    """One `genai_hosts` entry: `HOST[:PORT][=PROVIDER][;stream_usage=on|off]`, HOST may be a glob.

    The host says who is billed (the provider); the route of each request says which wire API it
    speaks, so one host may serve several (`api.deepseek.com` serves OpenAI's chat completions
    and, under `/anthropic/v1/messages`, Anthropic's Messages API).
    """

    host_pattern: str
    port: int | None
    provider: str
    stream_usage: bool | None = None  # None: decided by provider

    def matches(self, host: str, port: int) -> bool:
        if self.port is not None and self.port != port:
            return False
        return fnmatch.fnmatchcase(host.lower(), self.host_pattern)


_PROVIDER_NAME = re.compile(r"^[a-z0-9_.]{1,64}$")
_HOST_PATTERN = re.compile(r"^[a-z0-9*?.\-\[\]]{1,253}$")
_SWITCH = {"on": True, "true": True, "off": False, "false": False}


def parse_host_rule(entry: str) -> HostRule:
    """Parse a `genai_hosts` entry; raise ValueError with a readable reason."""
    entry, _, flags = entry.strip().partition(";")
    stream_usage: bool | None = None
    if flags:
        name, _, value = flags.strip().partition("=")
        if name.strip() != "stream_usage" or value.strip().lower() not in _SWITCH:
            raise ValueError(f"unknown setting {flags.strip()!r}; only stream_usage=on|off is known")
        stream_usage = _SWITCH[value.strip().lower()]
    if "://" in entry:
        url = urlsplit(entry.strip())
        raise ValueError(f"a URL is not a host entry: use the form HOST[:PORT][=PROVIDER], here {url.netloc or '?'!r}")
    spec, _, provider = entry.partition("=")
    provider = provider.strip() or DEFAULT_PROVIDER
    if not _PROVIDER_NAME.match(provider):
        raise ValueError(f"provider {provider!r} must be 1-64 of a-z, 0-9, '_' or '.'")
    host, port_text = spec.strip().lower(), ""
    if host.startswith("["):  # [::1]:8000
        inner, _, rest = host[1:].partition("]")
        host, port_text = inner, rest.removeprefix(":")
    elif host.count(":") == 1:
        host, port_text = host.split(":")
    if not host or not (_HOST_PATTERN.match(host) or _is_ipv6(host)):
        raise ValueError(f"host {host!r} is not a host name, address or glob (HOST[:PORT][=PROVIDER])")
    port: int | None = None
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(f"port {port_text!r} is not a number from 1 to 65535")
        port = int(port_text)
    return HostRule(host, port, provider, stream_usage)


def _is_ipv6(host: str) -> bool:
    try:
        return isinstance(ipaddress.ip_address(host), ipaddress.IPv6Address)
    except ValueError:
        return False


def match_host(rules: Sequence[HostRule], host: str, port: int) -> HostRule | None:
    for rule in rules:
        if rule.matches(host, port):
            return rule
    return None


MAX_REMEMBERED_HOSTS = 1024


class HostMatcher:
    """`match_host` over `rules`, its answer remembered per (host, port): glob matching costs a
    microsecond or more per rule, and a proxy sees few hosts. At most `limit` answers are kept,
    as a client may name any number of hosts."""

    def __init__(self, rules: Sequence[HostRule], limit: int = MAX_REMEMBERED_HOSTS) -> None:
        self.rules = rules
        self._limit = limit
        self._answers: dict[tuple[str, int], HostRule | None] = {}

    def __call__(self, host: str, port: int) -> HostRule | None:
        try:
            return self._answers[host, port]
        except KeyError:
            pass
        if len(self._answers) >= self._limit:
            self._answers.clear()
        rule = self._answers[host, port] = match_host(self.rules, host, port)
        return rule

    def __len__(self) -> int:
        """How many answers are remembered."""
        return len(self._answers)
