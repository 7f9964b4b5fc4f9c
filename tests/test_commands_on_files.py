"""The facts' and operations' shell commands, run for real on files in a temporary directory.

The fixture tests pin which commands an operation yields; these show that those commands do
what the operation promises to real files: nothing lost, nothing else touched.
"""

import hashlib
import json
import os
import shutil
import stat
import subprocess

import pytest
from pyinfra.api.exceptions import FactProcessError, OperationValueError
from pyinfra_fixtures import command_text, run_operation

from facts.br_netfilter import BrNetfilter, BrNetfilterBackups, record_name
from facts.cni import CniState
from facts.preflight import NodePreflight
from facts.systemd_unit import UnitState
from operations.br_netfilter import br_netfilter_absent
from operations.cni import cni_configs_absent, cni_configs_restored


def sh(command: str) -> list[str]:
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


def read_cni(conf_dir, backup_dir="/nonexistent"):
    fact = CniState()
    output = sh(command_text(fact.command(conf_dir=str(conf_dir), backup_dir=str(backup_dir))))
    return fact.process(output) if output else fact.default()


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def tree(directory) -> dict[bytes, tuple]:
    """Every entry of a directory by its name's bytes: symlinks by target text, files by content and mode."""
    found = {}
    for entry in os.scandir(os.fsencode(directory)):
        st = os.lstat(entry.path)
        if entry.is_symlink():
            found[entry.name] = ("symlink", os.readlink(entry.path))
        elif entry.is_file(follow_symlinks=False):
            found[entry.name] = (
                "file",
                stat.S_IMODE(st.st_mode),
                st.st_mtime_ns,
                open(entry.path, "rb").read(),
            )
        else:
            found[entry.name] = (stat.S_IFMT(st.st_mode),)
    return found


def converge(operation, conf, backup):
    """Read the fact from the files, run the operation's commands for real (no unit to restart)."""
    commands, host = run_operation(
        operation,
        {CniState: read_cni(conf, backup)},
        conf_dir=str(conf),
        backup_dir=str(backup),
        restart_unit=None,
    )
    for command in commands:
        sh(command)
    return commands


NEWLINE = "10-new\nline.conf"
QUOTED = "-x $(touch pwned) `touch pwned`; 'q\".conf"
NOT_UTF8 = os.fsdecode(b"\xff\xfe-latin1-\xe9.conf")


def odd_cni_dir(tmp_path):
    """A CNI directory with every kind of name and entry kubelet would load, and some it would not."""
    conf = tmp_path / "net d"
    templates = tmp_path / "templates"
    conf.mkdir()
    templates.mkdir()
    (templates / "bridge.conf").write_text('{"type": "bridge"}')
    (conf / NEWLINE).write_text('{"type": "bridge", "name": "newline"}')
    (conf / QUOTED).write_text('{"type": "bridge", "name": "quoted"}')
    (conf / NOT_UTF8).write_text('{"type": "bridge", "name": "latin1"}')
    (conf / ".hidden.json").write_text('{"type": "loopback"}')
    (conf / "20-flannel.conflist").write_text('{"plugins": [{"type": "flannel"}]}')
    (conf / "20-flannel.conflist").chmod(0o600)
    (conf / "10-bridge.conf").symlink_to("../templates/bridge.conf")
    (conf / "15-alias.conflist").symlink_to("20-flannel.conflist")
    (conf / "30-gone.json").symlink_to("../templates/gone\nwith a newline.json")
    (conf / "05-cilium.conflist").write_text('{"plugins": [{"type": "cilium-cni"}]}')
    (conf / "README").write_text("not a CNI file")
    (conf / "old.conf.d").mkdir()
    (conf / "dir.conf").mkdir()
    os.mkfifo(conf / "fifo.conf")
    return conf


def test_cni_fact_reads_real_directory(tmp_path):
    conf = odd_cni_dir(tmp_path)
    (conf / "40-calico.conflist.cilium_bak").write_text('{"plugins": [{"type": "calico"}]}')
    backup = tmp_path / "backups" / "cni"
    backup.mkdir(parents=True)
    (backup / "20-flannel.conflist").write_text('{"type": "flannel"}')
    (backup / "20-flannel.conflist.~1~").write_text("an older backup")
    (backup / "10-bridge.conf").symlink_to("../templates/bridge.conf")

    def file(path, cilium=False, mode="644"):
        return {
            "type": "file",
            "mode": mode,
            "target": None,
            "sha256": sha256(path),
            "cilium": cilium,
        }

    bridge = tmp_path / "templates" / "bridge.conf"
    assert read_cni(conf, backup) == {
        "configs": {
            NEWLINE: file(conf / NEWLINE),
            QUOTED: file(conf / QUOTED),
            NOT_UTF8: file(conf / NOT_UTF8),
            ".hidden.json": file(conf / ".hidden.json"),
            "20-flannel.conflist": file(conf / "20-flannel.conflist", mode="600"),
            "10-bridge.conf": {
                "type": "symlink",
                "mode": "777",
                "target": "../templates/bridge.conf",
                "sha256": sha256(bridge),
                "cilium": False,
            },
            "15-alias.conflist": {
                "type": "symlink",
                "mode": "777",
                "target": "20-flannel.conflist",
                "sha256": sha256(conf / "20-flannel.conflist"),
                "cilium": False,
            },
            "30-gone.json": {
                "type": "symlink",
                "mode": "777",
                "target": "../templates/gone\nwith a newline.json",
                "sha256": None,
                "cilium": False,
            },
            "05-cilium.conflist": file(conf / "05-cilium.conflist", cilium=True),
        },
        "backups": {
            "20-flannel.conflist": file(backup / "20-flannel.conflist"),
            # ../templates from the backup directory is another place: it dangles there.
            "10-bridge.conf": {
                "type": "symlink",
                "mode": "777",
                "target": "../templates/bridge.conf",
                "sha256": None,
                "cilium": False,
            },
        },
        "renamed": {"40-calico.conflist": file(conf / "40-calico.conflist.cilium_bak")},
        "record": None,
        "retired": [],
        "restart_pending": False,
    }
    (backup / ".kubelet-restart-pending").touch()
    assert read_cni(conf, backup)["restart_pending"] is True
    assert not (conf / "pwned").exists()


def test_cni_fact_missing_and_empty_directory(tmp_path):
    assert read_cni(tmp_path / "absent") == CniState.default()
    assert read_cni(tmp_path, tmp_path) == CniState.default()


def test_cni_fact_stops_on_a_record_it_did_not_write(tmp_path):
    (tmp_path / "migration-record").write_text("{not json\n")
    with pytest.raises(FactProcessError):
        read_cni(tmp_path, tmp_path)


def test_cni_configs_absent_moves_and_never_overwrites_a_backup(tmp_path):
    conf, backup = tmp_path / "net.d", tmp_path / "backups" / "cni"
    conf.mkdir()
    (conf / "10-bridge.conf").write_text("first")
    (conf / "notes.txt").write_text("left alone")

    assert converge(cni_configs_absent, conf, backup)
    record = (backup / "migration-record").read_bytes()
    # A second pass finds nothing to do.
    assert converge(cni_configs_absent, conf, backup) == []

    # The bridge config comes back with other content (drift) and is removed again.
    (conf / "10-bridge.conf").write_text("second")
    assert converge(cni_configs_absent, conf, backup)

    assert sorted(p.name for p in conf.iterdir()) == ["notes.txt"]
    assert (backup / "10-bridge.conf").read_text() == "second"
    assert (backup / "10-bridge.conf.~1~").read_text() == "first"
    # The record is the first run's, untouched, and alone.
    assert (backup / "migration-record").read_bytes() == record
    assert json.loads(record)["files"][0]["sha256"] == hashlib.sha256(b"first").hexdigest()
    assert sorted(p.name for p in backup.iterdir()) == [
        "10-bridge.conf",
        "10-bridge.conf.~1~",
        "migration-record",
    ]


def test_cni_record_is_written_whole_and_never_replaced(tmp_path):
    conf, backup = tmp_path / "net.d", tmp_path / "cni"
    conf.mkdir()
    (conf / "10-bridge.conf").write_text("{}")
    commands, _ = run_operation(
        cni_configs_absent,
        {CniState: read_cni(conf, backup)},
        conf_dir=str(conf),
        backup_dir=str(backup),
        restart_unit=None,
    )
    write_record = next(command for command in commands if "migration-record" in command)
    backup.mkdir()
    (backup / "migration-record").write_text("an earlier record\n")
    with pytest.raises(subprocess.CalledProcessError):
        sh(write_record)
    assert (backup / "migration-record").read_text() == "an earlier record\n"
    assert sorted(p.name for p in backup.iterdir()) == ["migration-record"]


def test_cni_round_trip_puts_every_file_back_as_it_was(tmp_path):
    conf, backup = odd_cni_dir(tmp_path), tmp_path / "backups" / "cni"
    cilium = conf / "05-cilium.conflist"
    cilium.rename(tmp_path / "cilium.conflist")
    before = tree(conf)

    assert converge(cni_configs_absent, conf, backup)
    assert sorted(tree(conf)) == sorted([b"README", b"old.conf.d", b"dir.conf", b"fifo.conf"])
    record = json.loads((backup / "migration-record").read_text())
    assert {os.fsencode(entry["name"]) for entry in record["files"]} == set(before) - set(
        tree(conf)
    )
    assert {
        entry["name"]: entry["target"] for entry in record["files"] if entry["type"] == "symlink"
    } == {
        "10-bridge.conf": "../templates/bridge.conf",
        "15-alias.conflist": "20-flannel.conflist",
        "30-gone.json": "../templates/gone\nwith a newline.json",
    }
    assert converge(cni_configs_absent, conf, backup) == []

    # What Cilium's agent writes once it runs, and takes along on the way back; and what it
    # renames (cni.exclusive): a config that appeared later, and one that clashes with a kept one.
    (tmp_path / "cilium.conflist").rename(cilium)
    (conf / "40-calico.conflist.cilium_bak").write_text('{"plugins": [{"type": "calico"}]}')
    (conf / "40-calico.conflist.cilium_bak").chmod(0o640)
    (conf / (NEWLINE + ".cilium_bak")).write_text(
        "a copy put back by hand, then renamed by the agent"
    )
    renamed = tree(conf)

    assert converge(cni_configs_restored, conf, backup)
    assert converge(cni_configs_restored, conf, backup) == []

    expected = dict(before)
    expected[b"40-calico.conflist"] = renamed[b"40-calico.conflist.cilium_bak"]
    expected[os.fsencode(NEWLINE + ".cilium_bak")] = renamed[os.fsencode(NEWLINE + ".cilium_bak")]
    assert tree(conf) == expected
    assert (conf / "10-bridge.conf").read_text() == '{"type": "bridge"}'
    assert (conf / "15-alias.conflist").read_text() == '{"plugins": [{"type": "flannel"}]}'
    kept = sorted(name.decode() for name in tree(backup))
    assert (
        kept[0] == "05-cilium.conflist"
        and kept[1].startswith("migration-record.~restored-")
        and len(kept) == 2
    )
    assert not (conf / "pwned").exists() and not (tmp_path / "pwned").exists()

    # The next migration records afresh.
    assert converge(cni_configs_absent, conf, backup)
    assert "40-calico.conflist" in (backup / "migration-record").read_text()


def test_cni_restore_without_a_record_puts_nothing_back(tmp_path):
    # The migration records before its first move: without a record it moved nothing, and a
    # copy in the backup directory is not its to put back. Cilium's configuration still goes.
    conf, backup = tmp_path / "net.d", tmp_path / "cni"
    conf.mkdir()
    backup.mkdir()
    (backup / "10-bridge.conf").write_text("{}")
    (conf / "05-cilium.conflist").write_text('{"plugins": [{"type": "cilium-cni"}]}')
    assert converge(cni_configs_restored, conf, backup)
    assert sorted(p.name for p in conf.iterdir()) == []
    assert sorted(p.name for p in backup.iterdir()) == ["05-cilium.conflist", "10-bridge.conf"]
    assert converge(cni_configs_restored, conf, backup) == []


def test_cni_backup_dir_inside_conf_dir_is_refused(tmp_path):
    for operation in (cni_configs_absent, cni_configs_restored):
        with pytest.raises(OperationValueError):
            run_operation(
                operation,
                {CniState: CniState.default()},
                conf_dir="/etc/cni/net.d",
                backup_dir="/etc/cni/net.d/backup/",
                restart_unit=None,
            )


def test_br_netfilter_absent_keeps_other_lines_and_a_backup(tmp_path):
    modules_file = tmp_path / "cloud init.conf"
    original = "# loaded at boot\noverlay\n  br_netfilter \nbr_netfilter_extra\n;br_netfilter\n"
    modules_file.write_text(original)
    backup = tmp_path / "backup"
    facts = {
        BrNetfilter: {
            "status": "builtin",
            "module_support": False,
            "persisted_in": [str(modules_file)],
        }
    }

    commands, _ = run_operation(br_netfilter_absent, facts, backup_dir=str(backup))
    for command in commands:
        sh(command)

    assert (
        modules_file.read_text() == "# loaded at boot\noverlay\nbr_netfilter_extra\n;br_netfilter\n"
    )
    assert (backup / "cloud init.conf").read_text() == original


def test_br_netfilter_fact_grep_matches_what_the_operation_removes(tmp_path):
    # The fact's persistence regex and the operation's sed use one pattern; check grep -E agrees
    # with it on the lines that must and must not count.
    from facts.br_netfilter import PERSISTENCE_LINE_REGEX

    sample = tmp_path / "m.conf"
    sample.write_text("br_netfilter\n\tbr_netfilter  \n#br_netfilter\nbr_netfilter2\noverlay\n")
    matched = subprocess.run(
        ["grep", "-cE", PERSISTENCE_LINE_REGEX, str(sample)], capture_output=True, text=True
    ).stdout.strip()
    assert matched == "2"


def test_br_netfilter_records_read_back_as_written(tmp_path):
    """What br_netfilter_absent records, BrNetfilterBackups reads back: the file as it was
    before its edit, and its copy; a retired record and a link in the backup directory are
    left out."""
    modules_file = tmp_path / "k8s.conf"
    original = "overlay\nbr_netfilter\n"
    modules_file.write_text(original)
    modules_file.chmod(0o640)
    backup = tmp_path / "backup"
    facts = {
        BrNetfilter: {
            "status": "absent",
            "module_support": True,
            "persisted_in": [str(modules_file)],
        }
    }
    commands, _ = run_operation(br_netfilter_absent, facts, backup_dir=str(backup))
    for command in commands:
        sh(command)
    (backup / (record_name(str(modules_file)) + ".~restored-20261201T000000Z~")).write_text("x")
    (backup / "a link").symlink_to(modules_file)

    fact = BrNetfilterBackups()
    found = fact.process(sh(command_text(fact.command(backup_dir=str(backup)))))

    digest = hashlib.sha256(original.encode()).hexdigest()
    recorded = found["records"][str(modules_file)]
    assert recorded["name"] == record_name(str(modules_file))
    assert (recorded["type"], recorded["mode"], recorded["sha256"]) == ("file", "0640", digest)
    assert recorded["stripped_sha256"] == hashlib.sha256(b"overlay\n").hexdigest()
    assert recorded["module_lines"] == [{"line": 2, "text": "br_netfilter"}]
    assert list(found["records"]) == [str(modules_file)]
    assert found["copies"]["k8s.conf"]["sha256"] == digest
    assert list(found["copies"]) == ["k8s.conf"]
    # A second run finds its record there: it stands, and the run goes on.
    record = (backup / record_name(str(modules_file))).read_bytes()
    sh(commands[2])
    assert (backup / record_name(str(modules_file))).read_bytes() == record


def test_br_netfilter_fact_describes_a_link_and_the_file_it_resolves_to(tmp_path):
    target = tmp_path / "modules"
    target.write_text("br_netfilter\n")
    link = tmp_path / "modules.conf"
    link.symlink_to("modules")
    fact = BrNetfilter()
    found = fact.process(sh(command_text(fact.command(paths=[str(link), str(tmp_path / "gone")]))))
    assert found["files"][str(link)] == {
        "type": "symlink",
        "owner": f"{os.getuid()}:{os.getgid()}",
        "target": "modules",
        "resolved": str(target),
    }
    assert found["files"][str(target)]["module_lines"] == [{"line": 1, "text": "br_netfilter"}]
    assert str(tmp_path / "gone") not in found["files"]


def test_node_preflight_measures_backup_dirs_that_do_not_exist_yet(tmp_path):
    conf = tmp_path / "net d"
    conf.mkdir()
    fact = NodePreflight()
    command = fact.command(
        service_host="localhost",
        service_port=1,
        cgroup_root=str(tmp_path),
        conf_dir=str(conf),
        backup_dirs=[str(tmp_path / "not yet" / "cni"), str(tmp_path / "units")],
    )
    found = fact.process(sh(command))
    assert found["conf_dir"] is True and found["kernel"] == os.uname().release
    assert [room["read_only"] for room in found["room"]] == [False, False]
    assert all(isinstance(room["free_kib"], int) for room in found["room"])
    # Without a CNI directory to check and no backup directories, neither is reported.
    bare = fact.process(
        sh(fact.command(service_host="localhost", service_port=1, cgroup_root=str(tmp_path)))
    )
    assert bare["conf_dir"] is False and bare["room"] == []


def test_unit_state_reads_the_record_and_the_retired_ones(tmp_path):
    # On a PATH without systemctl (this machine may have no systemd running): the records are
    # still read, and the unit reads as missing.
    bin_dir, records = tmp_path / "bin", tmp_path / "units"
    bin_dir.mkdir()
    records.mkdir()
    for tool in ("sh", "cat"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    unit = "kube-proxy.service"
    fact = UnitState()
    command = command_text(fact.command(unit=unit, record_dir=str(records)))

    def read():
        result = subprocess.run(
            ["sh", "-c", command],
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": str(bin_dir)},
        )
        return fact.process(result.stdout.splitlines())

    assert read()["record"] is None and read()["exists"] is False
    (records / f"{unit}.json").write_text(
        '{"load_state": "loaded", "unit_file_state": "enabled", "active_state": "active"}\n'
    )
    (records / f"{unit}.json.~restored-20261201T000000Z~").write_text("{}")
    found = read()
    assert found["record"]["enabled"] and found["record"]["running"]
    assert found["retired"] == [f"{unit}.json.~restored-20261201T000000Z~"]
