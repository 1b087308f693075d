"""mlbuild: a Bazel-style build and benchmark tool for ML workflows."""

__version__ = "0.1.0"
