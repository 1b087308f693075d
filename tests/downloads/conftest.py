"""The download tests' fixtures: the loopback file server of tests/conftest.py, and no proxies."""

import pytest


@pytest.fixture
def server(file_server):
    """The real loopback HTTP server whose failures the download tests script per path."""
    return file_server


@pytest.fixture(autouse=True)
def _no_proxies(no_proxies):
    """Loopback requests must not be sent to a proxy configured in the environment."""
