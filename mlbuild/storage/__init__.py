"""Storage: the content-addressed store, the action cache, and the remote cache client."""
