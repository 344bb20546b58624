"""A script with the addon's four traffic hooks, each doing nothing: `mitmdump -s bench/noop_hooks.py`.

Part 6 of the benchmark runs it to measure what mitmproxy itself spends on calling a script's
hooks, the floor under any addon that observes every flow.
"""

from mitmproxy import http


class NoopHooks:
    def request(self, flow: http.HTTPFlow) -> None:
        pass

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        pass

    def response(self, flow: http.HTTPFlow) -> None:
        pass

    def error(self, flow: http.HTTPFlow) -> None:
        pass


addons = [NoopHooks()]
