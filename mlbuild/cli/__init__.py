"""The `mlbuild` command line: one module per subcommand group, sharing a Session."""
