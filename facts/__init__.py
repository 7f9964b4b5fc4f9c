"""Custom pyinfra facts: read the state the migration declares."""
