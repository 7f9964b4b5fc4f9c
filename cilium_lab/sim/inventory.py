"""The pyinfra inventory of a running sim, for the unchanged deploy."""

from __future__ import annotations

from pathlib import Path
from pprint import pformat

import cilium_lab
from cilium_lab.sim.config import SimConfig

# inventories/ beside the package (an editable install, as the Makefile makes): the inventory must
# sit there so that pyinfra picks up inventories/group_data/ for it.
REPO_INVENTORIES = Path(cilium_lab.__file__).resolve().parent.parent / "inventories"


def default_inventory_path() -> Path:
    if (REPO_INVENTORIES / "group_data").is_dir():
        return REPO_INVENTORIES / "sim.py"
    return Path("inventories/sim.py")


def render(cfg: SimConfig) -> str:
    common = {
        "ssh_key": str(cfg.ssh_key),
        "ssh_known_hosts_file": str(cfg.known_hosts),
        # pyinfra's default, accept-new, would trust any key a node presents the first time.
        "ssh_strict_host_key_checking": "yes",
        # "kubernetes" resolves on the nodes, but the sim runs no API server behind it.
        "preflight_skip": ["api_port"],
    }

    def hosts(names: list[str]) -> str:
        rows = [
            f'    ("{name}", {{**_node, "ssh_hostname": "{cfg.address(name)}", "pod_cidr": "{cfg.pod_cidr(name)}"}}),'
            for name in names
        ]
        return "[\n" + "\n".join(rows) + "\n]"

    control = [n for n in cfg.nodes if cfg.is_control(n)]
    workers = [n for n in cfg.nodes if not cfg.is_control(n)]
    return f'''"""
The simulated lab, written by `cilium-lab sim up` (home: {cfg.home}); `sim down` deletes it.

From the repository root: pyinfra inventories/sim.py deploys/cilium.py
Shared data comes from inventories/group_data/. No `local` group: the sim has no Kubernetes API.
"""

_node = {pformat(common, indent=4, sort_dicts=False)}

control = {hosts(control)}

workers = {hosts(workers)}
'''


def write_inventory(cfg: SimConfig, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render(cfg))
    tmp.replace(path)
