"""Distributed execution on Ray: actions as pure data run on a cluster's nodes, their inputs
and outputs travelling through the remote cache (the client never ships bytes to a worker)."""
