"""A callgrind profile of the addon's hooks in mitmdump's process, for comparing two versions.

`python -m bench.profile_hooks TREE OUT [--freeze]` runs mitmdump with TREE's
`bench/hooks_only.py` (the hooks, every call discarded) under callgrind, sends 200 requests after
a warm-up, and writes the profile of those requests to OUT; it prints the instructions per
request. TREE is a checkout of this repository (`git worktree add /tmp/before <commit>`).
`--freeze` runs `gc.freeze()` once mitmdump runs, taking start-up's objects out of the garbage
collector's reach. Compare two profiles with `callgrind_annotate --threshold=100 OUT` (BENCHMARKS.md,
issue 22: how the +3.8% of issues 14–16 was found).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import tempfile
from pathlib import Path

from bench.run import Bench, Sizes

REQUESTS = 200
FREEZE = Path(__file__).with_name("freeze_gc.py")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("tree", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--freeze", action="store_true")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="genai-profile-") as tmp:
        bench = Bench(Sizes(), Path(tmp))
        try:
            raw = Path(tmp) / "callgrind.out"
            wrapper = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={raw}"]
            hosts = f"genai_hosts=127.0.0.1:{bench.upstream_port}=openai;stream_usage=on"
            scripts = ["-s", str(options.tree / "bench" / "hooks_only.py"), "--set", hosts]
            if options.freeze:
                scripts += ["-s", str(FREEZE)]
            with bench.proxy(False, "live", *scripts, wrapper=wrapper, env={"PYTHONPATH": str(options.tree)}) as proxy:
                bench.load(proxy.port, 2, 20, "plain", timeout=120)  # warm up: imports, caches, connections
                subprocess.run(["callgrind_control", "--zero", str(proxy.pid)], check=True, capture_output=True)
                bench.load(proxy.port, 4, REQUESTS, "plain", timeout=120)
                subprocess.run(["callgrind_control", "--dump", str(proxy.pid)], check=True, capture_output=True)
            dump = sorted(Path(tmp).glob(f"{raw.name}.*"))[0]  # the --dump file; the one at exit has no suffix
            options.out.write_bytes(dump.read_bytes())
            total = int(re.search(r"^summary: (\d+)", dump.read_text(), re.M).group(1))  # type: ignore[union-attr]
            print(f"{total / REQUESTS:,.0f} instructions per request")
        finally:
            bench.close()


if __name__ == "__main__":
    main()
