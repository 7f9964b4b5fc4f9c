"""The pyinfra inventory of a running sim, for the unchanged deploy."""

from __future__ import annotations

import runpy
from pathlib import Path
from pprint import pformat

import cilium_lab
from cilium_lab.sim import cilium_images, images
from cilium_lab.sim.config import SimConfig

# inventories/ beside the package (an editable install, as the Makefile makes): the inventory must
# sit there so that pyinfra picks up inventories/group_data/ for it.
REPO_INVENTORIES = Path(cilium_lab.__file__).resolve().parent.parent / "inventories"


def default_inventory_path() -> Path:
    if (REPO_INVENTORIES / "group_data").is_dir():
        return REPO_INVENTORIES / "sim.py"
    return Path("inventories/sim.py")


def group_data_value(group: str, key: str):
    """A value of the repository's group data (inventories/group_data/GROUP.py)."""
    path = REPO_INVENTORIES / "group_data" / f"{group}.py"
    return runpy.run_path(str(path)).get(key)


def cilium_version() -> str:
    """The Cilium the real data plane's agents run: the chart version the group data pins."""
    return "v" + str(group_data_value("local", "cilium_chart_version")).removeprefix("v")


def render(cfg: SimConfig) -> str:
    common = {
        "ssh_key": str(cfg.ssh_key),
        "ssh_known_hosts_file": str(cfg.known_hosts),
        # pyinfra's default, accept-new, would trust any key a node presents the first time.
        "ssh_strict_host_key_checking": "yes",
    }
    if not cfg.control_plane:
        # "kubernetes" resolves on the nodes, but no API server answers behind it.
        common["preflight_skip"] = ["api_port"]
    if cfg.data_plane == "real":
        # The lab's own keys on top of the chapter's values: its registry's images, no Envoy.
        common["cilium_values_overrides"] = cilium_images.chart_overrides(cfg, cilium_version())

    def hosts(names: list[str]) -> str:
        rows = [
            f'    ("{name}", {{**_node, "ssh_hostname": "{cfg.address(name)}", "pod_cidr": "{cfg.pod_cidr(name)}"}}),'
            for name in names
        ]
        return "[\n" + "\n".join(rows) + "\n]"

    control = [n for n in cfg.nodes if cfg.is_control(n)]
    workers = [n for n in cfg.nodes if not cfg.is_control(n)]
    text = f'''"""
The simulated lab, written by `cilium-lab sim up` (home: {cfg.home}); `sim down` deletes it.

From the repository root: pyinfra inventories/sim.py deploys/cilium.py
Shared data comes from inventories/group_data/.{"" if cfg.control_plane else " No `local` group: this sim has no control plane."}
"""

_node = {pformat(common, indent=4, sort_dicts=False)}

control = {hosts(control)}

workers = {hosts(workers)}
'''
    if cfg.control_plane:
        local = {
            "kubeconfig": str(cfg.kubeconfig),
            # The sim's chart repository (its charts directory served on the bridge), or the official one.
            "helm_repo_url": cfg.helm_repo_url,
            # `sim up` runs as root: the routes to the pod CIDRs change without sudo.
            "host_routes_sudo": False,
        }
        if "cilium_values_overrides" in common:
            local["cilium_values_overrides"] = common["cilium_values_overrides"]
        if cfg.data_plane == "real":
            # `cilium-lab connectivity --image`: agnhost from the sim's own registry.
            local["connectivity_image"] = images.image_ref(cfg, "agnhost")
        text += f"""
# The workstation: this machine, with the sim's kubeconfig and chart repository.
local = [("@local", {pformat(local, indent=4, sort_dicts=False)})]
"""
    return text


def write_inventory(cfg: SimConfig, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(render(cfg))
    tmp.replace(path)
