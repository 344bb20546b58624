"""The openai npm package (6.49) on the machine's Node (20) through the regular proxy: Node's own
`NODE_USE_ENV_PROXY` does not exist there, so the recipe of the README sets undici's
`EnvHttpProxyAgent` (it reads `HTTPS_PROXY`) as the global dispatcher, and `NODE_EXTRA_CA_CERTS`
trusts the mitmproxy CA (`harness/node-client/chat.mjs`; `make test` installs its packages with npm).
"""

import json
import os
import subprocess

from harness.e2e import World, spans_for
from harness.mitmdump import ROOT

CLIENT = ROOT / "harness" / "node-client"
KEY = "sk-proj-NodeE2eKey7Hq2Lp9Wm4Xn6Rt1Vb3Zc8"


def test_the_openai_npm_package_on_node_20_through_https_proxy(world: World):
    model = "e2e-node-regular"
    environment = {
        "PATH": os.environ["PATH"],
        "HOME": os.environ.get("HOME", "/tmp"),
        "OPENAI_API_KEY": KEY,
        "HTTPS_PROXY": world.regular.url,
        "NODE_EXTRA_CA_CERTS": str(world.regular.ca_cert),
    }
    finished = subprocess.run(
        ["node", "chat.mjs", model], cwd=CLIENT, env=environment, capture_output=True, text=True, timeout=60
    )
    assert finished.returncode == 0, finished.stderr[-2000:]
    usage = json.loads(finished.stdout)
    assert "api.openai.com:443" in world.forwarder.tunnels
    spans = spans_for(world, model, count=2)
    assert sorted(span.attributes["gen_ai.usage.output_tokens"] for span in spans) == sorted(
        [usage["plain"]["completion_tokens"], usage["streamed"]["completion_tokens"]]
    )
    assert {span.attributes["user_agent.name"] for span in spans} == {"openai-js"}
