"""
The CNI configurations on the simulated lab, whatever their names: a name with a newline, relative
symlinks (to a template outside the CNI directory, to a sibling), and files Cilium's agent renamed
to NAME.cilium_bak. Migrate, and the nodes converge; roll back, and every node is as it was just
before the migration, entry for entry (names, types, symlink targets, bytes, modes); a second
rollback changes nothing. The setup is undone at the end, and the nodes are as the sim booted.

Node state is read with tar from inside the nodes: e2e_sim's snapshot reads `find` line by line,
which a name with a newline breaks.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import tarfile

import pytest
from e2e_sim import CNI_BACKUP, CNI_DIR, OURS, ROLLBACK, comparable

pytestmark = pytest.mark.e2e

TEMPLATES = "/etc/cni/templates"
# What a node's CNI state is made of, and what else the round trip must leave alone.
TREES = ("/etc/cni", "/etc/modules-load.d", "/etc/modules", "/etc/systemd/system", "/var/backups")
NEWLINE = "20-new\nline.conf"
TEMPLATE_LINK = "30-template.conflist"
SIBLING_LINK = "15-alias.conf"
RENAMED = "40-calico.conflist"
OP_CNI = "Restore the old CNI configurations and restart kubelet"


def q(text: str) -> str:
    return "'" + text.replace("'", "'\"'\"'") + "'"


def read(sim, node: str) -> dict[str, tuple]:
    """Every entry under TREES: path -> (type, mode, uid, gid, symlink target or SHA-256 of the bytes)."""
    out = sim.sh(
        node,
        "set --; for p in " + " ".join(t.lstrip("/") for t in TREES) + "; do "
        '[ -e "/$p" ] && set -- "$@" "$p"; done; tar -C / --numeric-owner -cf - "$@" | base64 -w0',
    )
    entries = {}
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(out)), mode="r:") as archive:
        for member in archive:
            path = "/" + member.name.rstrip("/")
            if member.issym():
                kind, what = "symlink", member.linkname
            elif member.isfile():
                kind, what = "file", hashlib.sha256(archive.extractfile(member).read()).hexdigest()
            elif member.isdir():
                kind, what = "dir", None
            else:
                kind, what = str(member.type), None
            entries[path] = (kind, oct(member.mode), member.uid, member.gid, what)
    return entries


def outside_ours(entries: dict[str, tuple]) -> dict[str, tuple]:
    """A node's entries but our backup directory: it keeps records and older copies by design."""
    return {
        path: entry
        for path, entry in entries.items()
        if path != OURS and not path.startswith(OURS + "/")
    }


def cni_configs(entries: dict[str, tuple], directory: str = CNI_DIR) -> dict[str, tuple]:
    """What kubelet would load from ``directory``: entries named as CNI configurations, not directories."""
    return {
        path[len(directory) + 1 :]: entry
        for path, entry in entries.items()
        if path.startswith(directory + "/")
        and "/" not in path[len(directory) + 1 :]
        and path.endswith((".conf", ".conflist", ".json"))
        and entry[0] != "dir"
    }


def undo(sim, node_a: str, node_b: str) -> None:
    """Remove what this module added to the nodes (idempotent: runs again at teardown)."""
    names = [NEWLINE, TEMPLATE_LINK, SIBLING_LINK]
    sim.sh(
        node_a,
        "rm -f " + " ".join(q(f"{CNI_DIR}/{name}") for name in names) + f" && rm -rf {TEMPLATES}",
    )
    sim.sh(node_b, f"rm -f {q(f'{CNI_DIR}/{RENAMED}')} {q(f'{CNI_DIR}/10-bridge.conf.cilium_bak')}")


@pytest.fixture(scope="module")
def scenario(sim):
    node_a, node_b = sim.nodes[0], sim.nodes[1]
    # From the guide's state, whatever the tests before left (a migrated cluster, say).
    start = sim.pyinfra("-y", deploy=ROLLBACK)
    assert start.returncode == 0, start.log
    try:
        sim.sh(
            node_a,
            (
                f"mkdir -p {TEMPLATES} && "
                f'printf \'%s\\n\' \'{{"cniVersion": "1.0.0", "name": "tpl", "plugins": [{{"type": "ptp"}}]}}\''
                f" > {TEMPLATES}/bridge.conflist && "
                f'printf \'%s\\n\' \'{{"cniVersion": "1.0.0", "name": "nl", "type": "bridge"}}\' > {q(f"{CNI_DIR}/{NEWLINE}")} && '
                f"chmod 600 {q(f'{CNI_DIR}/{NEWLINE}')} && "
                f"ln -s ../templates/bridge.conflist {CNI_DIR}/{TEMPLATE_LINK} && "
                f"ln -s 99-loopback.conf {CNI_DIR}/{SIBLING_LINK}"
            ),
        )
        before = {node: read(sim, node) for node in sim.nodes}
        migrate = sim.pyinfra("-y")
        migrated = {node: read(sim, node) for node in sim.nodes}
        record = sim.sh(node_a, f"cat {CNI_BACKUP}/migration-record", check=False)
        rerun = sim.pyinfra("-y")
        # Cilium's agent (cni.exclusive) renames what appears later: a config another installer
        # wrote, and a copy of a kept config someone put back by hand.
        sim.sh(
            node_b,
            (
                f'printf \'%s\\n\' \'{{"cniVersion": "1.0.0", "name": "calico", "plugins": [{{"type": "calico"}}]}}\''
                f" > {CNI_DIR}/{RENAMED} && chmod 640 {CNI_DIR}/{RENAMED} && "
                f"mv {CNI_DIR}/{RENAMED} {CNI_DIR}/{RENAMED}.cilium_bak && "
                f"cp {CNI_BACKUP}/10-bridge.conf {CNI_DIR}/10-bridge.conf.cilium_bak"
            ),
        )
        renamed = read(sim, node_b)
        rollback = sim.pyinfra("-y", deploy=ROLLBACK)
        rolled_back = {node: read(sim, node) for node in sim.nodes}
        again = sim.pyinfra("-y", deploy=ROLLBACK)
        final = {node: read(sim, node) for node in sim.nodes}
        yield {
            "a": node_a,
            "b": node_b,
            "before": before,
            "migrate": migrate,
            "migrated": migrated,
            "record": record,
            "rerun": rerun,
            "renamed": renamed,
            "rollback": rollback,
            "rolled_back": rolled_back,
            "again": again,
            "final": final,
        }
    finally:
        undo(sim, node_a, node_b)


def test_migration_moves_every_config_whatever_its_name(scenario):
    node = scenario["a"]
    before, after = scenario["before"][node], scenario["migrated"][node]
    assert scenario["migrate"].returncode == 0, scenario["migrate"].log
    old = cni_configs(before)
    # The setup is there, or this test would prove nothing.
    assert {NEWLINE, TEMPLATE_LINK, SIBLING_LINK} <= set(old)
    assert old[TEMPLATE_LINK][0] == old[SIBLING_LINK][0] == "symlink"
    assert cni_configs(after) == {}
    # Each one kept as it was: a symlink as the same symlink (it may dangle there), a file byte for byte.
    assert cni_configs(after, CNI_BACKUP) == old
    # The template it pointed to stays where it is.
    assert {p: e for p, e in after.items() if p.startswith(TEMPLATES)} == {
        p: e for p, e in before.items() if p.startswith(TEMPLATES)
    }


def test_migration_records_what_it_moves(sim, scenario):
    node = scenario["a"]
    old = cni_configs(scenario["before"][node])
    record = json.loads(scenario["record"])
    files = {entry["name"]: entry for entry in record["files"]}
    assert set(files) == set(old)
    for name, (kind, mode, _, _, what) in old.items():
        assert files[name]["type"] == kind, name
        assert files[name]["mode"] == format(int(mode, 8), "o"), name
        if kind == "symlink":
            assert files[name]["target"] == what, name
        else:
            assert files[name]["sha256"] == what, name


def test_migration_rerun_changes_nothing(sim, scenario):
    rerun = scenario["rerun"]
    assert rerun.returncode == 0, rerun.log
    assert rerun.hosts_changed() == set()


def test_rollback_puts_every_node_back_as_it_was(sim, scenario):
    rollback = scenario["rollback"]
    assert rollback.returncode == 0, rollback.log
    assert rollback.changed()[OP_CNI] == set(sim.nodes)
    node_b = scenario["b"]
    for node in sim.nodes:
        expected = outside_ours(scenario["before"][node])
        if node == node_b:
            # What the agent renamed comes back under its name; the copy whose name is taken stays beside it.
            renamed = scenario["renamed"]
            expected[f"{CNI_DIR}/{RENAMED}"] = renamed[f"{CNI_DIR}/{RENAMED}.cilium_bak"]
            expected[f"{CNI_DIR}/10-bridge.conf.cilium_bak"] = renamed[
                f"{CNI_DIR}/10-bridge.conf.cilium_bak"
            ]
        assert outside_ours(scenario["rolled_back"][node]) == expected, node
        # No live record left: the rollback retired it.
        assert f"{CNI_BACKUP}/migration-record" not in scenario["rolled_back"][node], node
    assert "10-bridge.conf.cilium_bak left beside 10-bridge.conf" in rollback.log


def test_second_rollback_changes_nothing(scenario):
    again = scenario["again"]
    assert again.returncode == 0, again.log
    assert again.hosts_changed() == set()
    assert scenario["final"] == scenario["rolled_back"]


def test_undone_the_nodes_are_as_the_sim_booted(sim, scenario):
    undo(sim, scenario["a"], scenario["b"])
    for node in sim.nodes:
        assert comparable(sim.snapshot(node)) == comparable(sim.pristine[node]), node
