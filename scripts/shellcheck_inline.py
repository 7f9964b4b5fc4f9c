"""shellcheck over the shell still written inline in Python, too short for a file of its own
(``make lint``; the scripts in ``facts/`` and ``operations/`` are checked as files).

Each snippet is checked as the POSIX ``sh`` that runs it on the nodes, or as the shell its first
line names (the simulated lab's scripts); its commands are built with sample arguments where
they take any.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cilium_lab.sim import cilium_images, realnode  # noqa: E402
from facts.routes import HostRoutes  # noqa: E402
from operations.records import retired  # noqa: E402

SNIPPETS = {
    "facts/routes.py HostRoutes": HostRoutes().command(),
    "operations/records.py retired()": retired("/var/backups/cilium lab/record"),
    "cilium_lab/sim/realnode.py RUNC_WRAPPER": realnode.RUNC_WRAPPER,
    **{
        f"cilium_lab/sim/cilium_images.py {name}": text
        for name, text in cilium_images.SCRIPTS.items()
    },
}


def main() -> int:
    failed = []
    for name, text in SNIPPETS.items():
        shell = [] if text.startswith("#!") else ["--shell=sh"]
        result = subprocess.run(
            ["shellcheck", *shell, "-"], input=text, capture_output=True, text=True
        )
        if result.returncode != 0:
            failed.append(name)
            print(f"{name}:\n{result.stdout}{result.stderr}", file=sys.stderr)
    if failed:
        print(f"shellcheck failed on {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
