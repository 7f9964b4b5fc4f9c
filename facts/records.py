"""
How the migration's records are named once a rollback has given back what they say.

Every record (a unit's state, the CNI files moved, each br_netfilter persistence file) is
written once before the first change and, after a rollback, renamed to
``<record>.~restored-<UTC time>~``: the shape of the numbered backups kept beside it
(``NAME.~N~``), an older copy rather than something still to restore.
"""

RETIRED_INFIX = ".~restored-"
