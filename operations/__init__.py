"""Custom pyinfra operations: declare the state of a node after the migration."""
