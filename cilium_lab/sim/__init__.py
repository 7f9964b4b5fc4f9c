"""
The simulated lab: the guide's nodes as systemd-nspawn containers on this machine.

Each node boots systemd as PID 1 on an overlay over one cached debootstrap root, in a network
namespace of its own wired to a bridge the sim creates, in the state LAB.md describes before the
chapter. ``cilium-lab sim up`` writes an inventory for the unchanged deploy.
"""


class SimError(Exception):
    """A failure the user can act on; the CLI prints it as one line and exits non-zero."""
