"""The guide's cluster (see LAB.md): three control nodes, three workers, and the workstation.

Run: ``pyinfra inventories/lab.py deploys/cilium.py``. Shared data lives in ``group_data/``;
what differs per node is here. Drop the ``local`` group to run the node phase alone.
"""

control = [
    ("control0", {"ssh_hostname": "192.168.1.11", "pod_cidr": "10.1.0.0/16"}),
    ("control1", {"ssh_hostname": "192.168.1.12", "pod_cidr": "10.2.0.0/16"}),
    ("control2", {"ssh_hostname": "192.168.1.13", "pod_cidr": "10.3.0.0/16"}),
]

workers = [
    ("worker0", {"ssh_hostname": "192.168.1.14", "pod_cidr": "10.4.0.0/16"}),
    ("worker1", {"ssh_hostname": "192.168.1.15", "pod_cidr": "10.5.0.0/16"}),
    ("worker2", {"ssh_hostname": "192.168.1.16", "pod_cidr": "10.6.0.0/16"}),
]

# The machine running pyinfra: it runs helm and holds the routes to the pod CIDRs.
local = ["@local"]
