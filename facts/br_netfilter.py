"""
Whether ``br_netfilter`` is in the kernel, how, and where it is made persistent.
"""

from __future__ import annotations

from pyinfra.api import FactBase

MODULE = "br_netfilter"
# systemd-modules-load reads these; the guide writes /etc/modules-load.d/cloud-init.conf.
PERSISTENCE_FILES = ("/etc/modules-load.d/*.conf", "/etc/modules")
# A line that loads the module: its name alone, maybe padded (comments start with # or ;).
PERSISTENCE_LINE_REGEX = f"^[[:space:]]*{MODULE}[[:space:]]*$"


class BrNetfilter(FactBase):
    """
    Returns how ``br_netfilter`` is present in the running kernel and every file that loads it
    at boot.

    ``status`` is ``module`` (loaded, listed in ``/proc/modules``), ``builtin`` (active but
    compiled in, so it cannot be unloaded) or ``absent``. ``module_support`` is False on a
    kernel without loadable modules (no ``/proc/modules``).

    .. code:: python

        {
            "status": "module",
            "module_support": True,
            "persisted_in": ["/etc/modules-load.d/cloud-init.conf"],
        }
    """

    @staticmethod
    def default():
        return {"status": "absent", "module_support": True, "persisted_in": []}

    def command(self):
        # br_netfilter is what registers the net.bridge.bridge-nf-* sysctls, so their
        # directory shows it active whether it is a module or built in.
        return (
            "if [ -e /proc/modules ]; then echo module_support=yes; "
            f"grep -qs '^{MODULE} ' /proc/modules && echo status=module; "
            "else echo module_support=no; fi; "
            "[ -d /proc/sys/net/bridge ] && echo active=yes; "
            f"for f in {' '.join(PERSISTENCE_FILES)}; do "
            f"[ -f \"$f\" ] && grep -qsE '{PERSISTENCE_LINE_REGEX}' \"$f\" && echo \"persisted=$f\"; "
            "done; true"
        )

    def process(self, output):
        state = self.default()
        state["module_support"] = False
        active = False
        for line in output:
            key, _, value = line.strip().partition("=")
            if key == "module_support":
                state["module_support"] = value == "yes"
            elif key == "status":
                state["status"] = value
            elif key == "active":
                active = True
            elif key == "persisted":
                state["persisted_in"].append(value)

        if active and state["status"] != "module":
            state["status"] = "builtin"
        return state
