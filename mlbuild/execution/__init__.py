"""Execution: the scheduler, the sandbox, the executors and the rebuilder that ties them to the cache."""
