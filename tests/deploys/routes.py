"""The routes operations alone, on the hosts of a test's inventory: ``routes`` and ``want`` are data."""

from pyinfra import host

from operations.routes import pod_cidr_routes_absent, pod_cidr_routes_present

if host.data.want == "absent":
    pod_cidr_routes_absent(name="Delete the host routes to the pod CIDRs", routes=host.data.routes)
else:
    pod_cidr_routes_present(name="Route the pod CIDRs via the nodes", routes=host.data.routes)
