"""
The CNI network configurations kubelet finds in a directory.
"""

from __future__ import annotations

import shlex

from pyinfra.api import FactBase

# The file names libcni loads; anything else in the directory is not a CNI configuration.
CNI_CONFIG_PATTERNS = ("*.conf", "*.conflist", "*.json")

# Cilium's agent writes its own configuration (05-cilium.conflist by default) with this plugin type.
CILIUM_PLUGIN_TYPE = "cilium-cni"


class CniConfigs(FactBase):
    """
    Returns the CNI configuration files in a directory, by file name, telling Cilium's own
    (a ``cilium-cni`` plugin inside) from the others, with each file's SHA-256.

    + directory: the CNI configuration directory

    A missing or empty directory gives ``{}``; other files in it (backups, notes) are not listed.

    .. code:: python

        {
            "10-bridge.conf": {"cilium": False, "sha256": "9f2c…"},
            "05-cilium.conflist": {"cilium": True, "sha256": "41d0…"},
        }
    """

    default = dict

    def command(self, directory: str):
        globs = " ".join(f'"$d"/{pattern}' for pattern in CNI_CONFIG_PATTERNS)
        # One line a file: "<cilium|other> <sha256> <name>"; the name comes last so that
        # spaces in it survive.
        return (
            f"d={shlex.quote(directory)}; "
            f'[ -d "$d" ] || exit 0; '
            f"for f in {globs}; do "
            f'[ -f "$f" ] || continue; '
            f"if grep -qs '\"{CILIUM_PLUGIN_TYPE}\"' \"$f\"; then k=cilium; else k=other; fi; "
            f's=$(sha256sum < "$f") || exit 1; '
            f'echo "$k ${{s%% *}} ${{f##*/}}"; '
            f"done"
        )

    def process(self, output):
        configs = {}
        for line in output:
            kind, sha256, name = line.split(" ", 2)
            configs[name] = {"cilium": kind == "cilium", "sha256": sha256}
        return configs
