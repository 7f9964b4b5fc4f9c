"""
br_netfilter persisted the way Debian and Ubuntu ship it: /etc/modules-load.d/modules.conf a
symlink to ../modules, and /etc/modules listing the module beside another one and a comment,
with a mode of its own. The migration removes only that line from /etc/modules and leaves the
link a link; the rollback gives the node back exactly, link, bytes and mode; a second rollback
changes nothing. The node is then put back as the guide has it, for the tests after these.
"""

from __future__ import annotations

import shlex

import pytest
from e2e_sim import MODULES_BACKUP, ROLLBACK, comparable

pytestmark = pytest.mark.e2e

OP_MIGRATE = "Unload br_netfilter and stop loading it at boot"
OP_ROLLBACK = "Load br_netfilter at boot again"
LINK = "/etc/modules-load.d/modules.conf"
MODULES = "/etc/modules"
# The module in the middle, so that a rollback which appended it would be caught.
ADDED = "# for the bridge CNI and kube-proxy\nbr_netfilter\nloop\n"
ASIDE = "/root/modules.before-exact-rollback-test"
RECORDS = {MODULES: "etc%2Fmodules.record", LINK: "etc%2Fmodules-load.d%2Fmodules.conf.record"}


def module_files(snap: dict) -> dict:
    """The persistence files as they are: type, mode, link target, SHA-256; and the texts."""
    files = {
        path: entry
        for path, entry in snap["files"].items()
        if path == MODULES or path.startswith(LINK)
    }
    return {
        "files": files,
        "texts": {path: text for path, text in snap["texts"].items() if path in files},
    }


def record(text: str) -> dict[str, list[str]]:
    fields: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.partition("=")
        fields.setdefault(key, []).append(value)
    return fields


@pytest.fixture(scope="module")
def node(sim):
    return sim.nodes[1]


@pytest.fixture(scope="module")
def story(sim, node):
    """From the guide's state: the Debian layout on one node, a dry run, the migration and a
    re-run, two rollbacks; then the guide's state again."""
    # Earlier tests may leave the lab migrated: their rollback first, so that the migration here
    # starts from the guide's state.
    if any(comparable(sim.snapshot(n)) != comparable(sim.pristine[n]) for n in sim.nodes):
        setup = sim.pyinfra("-y", deploy=ROLLBACK)
        assert setup.returncode == 0, setup.log
    for each in sim.nodes:
        assert comparable(sim.snapshot(each)) == comparable(sim.pristine[each]), each

    pristine_link = sim.pristine[node]["files"].get(LINK)
    # The sim's root filesystem is Debian's: the link is there already, or (another image) not at all.
    assert pristine_link is None or pristine_link["type"] == "l", pristine_link
    told = {}
    try:
        sim.sh(
            node,
            f"cp -p {MODULES} {ASIDE} && printf %s {shlex.quote(ADDED)} >> {MODULES} && chmod 0640 {MODULES} && "
            f'{{ [ "$(readlink {LINK})" = ../modules ] || ln -sfn ../modules {LINK}; }}',
        )
        told["before"] = sim.snapshot(node)
        told["dry"] = sim.pyinfra("--dry")
        told["after_dry"] = sim.snapshot(node)
        told["migrate"] = sim.pyinfra("-y")
        told["migrated"] = sim.snapshot(node)
        told["records"] = {
            path: sim.sh(node, f"cat '{MODULES_BACKUP}/{name}'", check=False)
            for path, name in RECORDS.items()
        }
        told["rerun"] = sim.pyinfra("-y")
        told["rerun_snapshot"] = sim.snapshot(node)
        told["rollback"] = sim.pyinfra("-y", deploy=ROLLBACK)
        told["rolled_back"] = sim.snapshot(node)
        told["left_in_backup"] = sim.sh(node, f"ls -A {MODULES_BACKUP}").split()
        told["again"] = sim.pyinfra("-y", deploy=ROLLBACK)
        told["after_again"] = sim.snapshot(node)
    finally:
        # The guide's state again even when a step above failed: the tests after these need it.
        link = f" && ln -s {shlex.quote(pristine_link['link'])} {LINK}" if pristine_link else ""
        sim.sh(node, f"{{ [ ! -e {ASIDE} ] || mv -f {ASIDE} {MODULES}; }} && rm -f {LINK}{link}")
    told["guide_again"] = sim.snapshot(node)
    return told


def test_the_node_has_debians_layout(story):
    before = story["before"]
    assert before["files"][LINK]["type"] == "l" and before["files"][LINK]["link"] == "../modules"
    assert before["files"][MODULES]["type"] == "f" and before["files"][MODULES]["mode"] == "640"
    assert before["texts"][MODULES].endswith(ADDED)


def test_dry_run_plans_the_change_and_makes_none(node, story):
    dry = story["dry"]
    assert dry.returncode == 0, dry.log
    assert node in dry.plan()[OP_MIGRATE]
    assert story["after_dry"] == story["before"]


def test_migration_keeps_the_link_and_removes_only_the_line(node, story):
    migrate, before, migrated = story["migrate"], story["before"], story["migrated"]
    assert migrate.returncode == 0, migrate.log
    assert node in migrate.changed()[OP_MIGRATE]
    assert (
        migrated["files"][LINK]["type"] == "l" and migrated["files"][LINK]["link"] == "../modules"
    )
    assert migrated["files"][MODULES]["mode"] == "640"
    assert migrated["texts"][MODULES] == before["texts"][MODULES].replace("br_netfilter\n", "")


def test_migration_recorded_the_file_and_the_link(story):
    before = story["before"]
    number = before["texts"][MODULES].splitlines().index("br_netfilter") + 1
    assert story["records"][MODULES] and story["records"][LINK], f"no records in {MODULES_BACKUP}"
    file_record, link_record = record(story["records"][MODULES]), record(story["records"][LINK])
    assert file_record["path"] == [MODULES] and file_record["type"] == ["file"]
    assert file_record["mode"] == ["640"] and file_record["owner"] == ["0:0"]
    assert file_record["sha256"] == [before["files"][MODULES]["sha256"]]
    assert file_record["module_line"] == [f"{number}:br_netfilter"]
    assert link_record["path"] == [LINK] and link_record["type"] == ["symlink"]
    assert link_record["target"] == ["../modules"] and link_record["resolved"] == [MODULES]


def test_rerun_after_the_migration_changes_nothing(story):
    rerun = story["rerun"]
    assert rerun.returncode == 0, rerun.log
    assert rerun.hosts_changed() == set()
    assert story["rerun_snapshot"] == story["migrated"]


def test_rollback_gives_the_node_back_exactly(node, story):
    rollback, before, rolled_back = story["rollback"], story["before"], story["rolled_back"]
    assert rollback.returncode == 0, rollback.log
    assert node in rollback.changed()[OP_ROLLBACK]
    assert module_files(rolled_back) == module_files(before)
    assert comparable(rolled_back) == comparable(before)


def test_rollback_retires_the_records(story):
    left = story["left_in_backup"]
    assert not [name for name in left if name.endswith(".record")], left
    for name in RECORDS.values():
        assert [n for n in left if n.startswith(f"{name}.~restored-") and n.endswith("~")], (
            name,
            left,
        )


def test_second_rollback_changes_nothing(story):
    again = story["again"]
    assert again.returncode == 0, again.log
    assert again.hosts_changed() == set()
    assert story["after_again"] == story["rolled_back"]


def test_node_is_as_the_guide_left_it_afterwards(sim, node, story):
    assert comparable(story["guide_again"]) == comparable(sim.pristine[node])
