"""The RPC methods, one module per namespace (status and key, dest, job,
restore/verify/usage, notify), each handler taking a small Context and its
decoded params. dispatch.py decodes, routes and translates errors;
views.py shapes what clients see; actions.py holds the policy the dest
handlers share (authentication changes, host-key pins)."""
