"""The facts' and operations' shell commands, run for real on files in a temporary directory.

The fixture tests pin which commands an operation yields; these show that those commands do
what the operation promises to real files: nothing lost, nothing else touched.
"""

import hashlib
import subprocess

from facts.br_netfilter import BrNetfilter
from facts.cni import CniState
from operations.br_netfilter import br_netfilter_absent
from operations.cni import cni_configs_absent, cni_configs_restored
from pyinfra_fixtures import command_text, run_operation


def sh(command: str) -> list[str]:
    result = subprocess.run(["sh", "-c", command], capture_output=True, text=True, check=True)
    return result.stdout.splitlines()


def read_cni(conf_dir, backup_dir="/nonexistent"):
    fact = CniState()
    output = sh(command_text(fact.command(conf_dir=str(conf_dir), backup_dir=str(backup_dir))))
    return fact.process(output) if output else fact.default()


def sha256(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_cni_fact_reads_real_directory(tmp_path):
    conf = tmp_path / "net d"
    conf.mkdir()
    (conf / "10 my bridge.conf").write_text('{"type": "bridge", "bridge": "cnio0"}')
    (conf / "05-cilium.conflist").write_text('{"plugins": [{"type": "cilium-cni"}]}')
    (conf / "99-loopback.json").write_text('{"type": "loopback"}')
    (conf / "README").write_text("not a CNI file")
    (conf / "10-bridge.conf.cilium_bak").write_text("Cilium's own backup")

    backup = tmp_path / "backup"
    backup.mkdir()
    (backup / "20-flannel.conflist").write_text('{"type": "flannel"}')
    (backup / "20-flannel.conflist.~1~").write_text("an older backup")

    assert read_cni(conf, backup) == {
        "configs": {
            "10 my bridge.conf": {"cilium": False, "sha256": sha256(conf / "10 my bridge.conf")},
            "05-cilium.conflist": {"cilium": True, "sha256": sha256(conf / "05-cilium.conflist")},
            "99-loopback.json": {"cilium": False, "sha256": sha256(conf / "99-loopback.json")},
        },
        "backups": {"20-flannel.conflist": {"cilium": False, "sha256": sha256(backup / "20-flannel.conflist")}},
        "restart_pending": False,
    }
    (backup / ".kubelet-restart-pending").touch()
    assert read_cni(conf, backup)["restart_pending"] is True


def test_cni_fact_missing_and_empty_directory(tmp_path):
    assert read_cni(tmp_path / "absent") == CniState.default()
    assert read_cni(tmp_path, tmp_path) == CniState.default()


def test_cni_configs_absent_moves_and_never_overwrites_a_backup(tmp_path):
    conf, backup = tmp_path / "net.d", tmp_path / "backups" / "cni"
    conf.mkdir()
    (conf / "10-bridge.conf").write_text("first")
    (conf / "notes.txt").write_text("left alone")

    def converge():
        commands, _ = run_operation(
            cni_configs_absent,
            {CniState: read_cni(conf, backup)},
            conf_dir=str(conf),
            backup_dir=str(backup),
            restart_unit=None,
        )
        for command in commands:
            sh(command)
        return commands

    assert converge()
    # A second pass finds nothing to do.
    assert converge() == []

    # The bridge config comes back with other content (drift) and is removed again.
    (conf / "10-bridge.conf").write_text("second")
    assert converge()

    assert sorted(p.name for p in conf.iterdir()) == ["notes.txt"]
    assert (backup / "10-bridge.conf").read_text() == "second"
    assert (backup / "10-bridge.conf.~1~").read_text() == "first"


def test_cni_round_trip_puts_every_file_back_as_it_was(tmp_path):
    conf, backup = tmp_path / "net.d", tmp_path / "backups" / "cni"
    conf.mkdir()
    (conf / "10-bridge.conf").write_text('{"type": "bridge"}')
    (conf / "99 loopback.conf").write_text('{"type": "loopback"}')
    (conf / "README").write_text("left alone")
    (conf / "10-bridge.conf").chmod(0o600)
    before = {p.name: (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime) for p in conf.iterdir()}

    def run(operation):
        commands, _ = run_operation(operation, {CniState: read_cni(conf, backup)}, conf_dir=str(conf),
                                    backup_dir=str(backup), restart_unit=None)
        for command in commands:
            sh(command)
        return commands

    assert run(cni_configs_absent)
    # What Cilium's agent writes once it runs, and takes along on the way back.
    (conf / "05-cilium.conflist").write_text('{"plugins": [{"type": "cilium-cni"}]}')
    assert run(cni_configs_restored)
    assert run(cni_configs_restored) == []

    after = {p.name: (p.read_bytes(), p.stat().st_mode, p.stat().st_mtime) for p in conf.iterdir()}
    assert after == before
    assert sorted(p.name for p in backup.iterdir()) == ["05-cilium.conflist"]


def test_br_netfilter_absent_keeps_other_lines_and_a_backup(tmp_path):
    modules_file = tmp_path / "cloud init.conf"
    original = "# loaded at boot\noverlay\n  br_netfilter \nbr_netfilter_extra\n;br_netfilter\n"
    modules_file.write_text(original)
    backup = tmp_path / "backup"
    facts = {
        BrNetfilter: {"status": "builtin", "module_support": False, "persisted_in": [str(modules_file)]}
    }

    commands, _ = run_operation(br_netfilter_absent, facts, backup_dir=str(backup))
    for command in commands:
        sh(command)

    assert modules_file.read_text() == "# loaded at boot\noverlay\nbr_netfilter_extra\n;br_netfilter\n"
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
