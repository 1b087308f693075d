"""Options shared by the commands that build: configuration, parallelism, caches."""

from __future__ import annotations

import functools
import os

import click

from ..execution.builder import BuildOptions
from .session import default_jobs


def config_option(f):
    return click.option(
        "--config", "configs", multiple=True, metavar="VALUES",
        help="Config values, comma-separated: --config=cuda,int8,batch_size=8 (see `mlbuild config list`).",
    )(f)


def build_options(f):
    """Decorate a command with every option that shapes a build."""
    options = [
        config_option,
        click.option("-j", "--jobs", type=click.IntRange(min=1), default=None,
                     help="Parallel actions (default: number of cores)."),
        click.option("-k", "--keep-going", is_flag=True, help="Build as much as possible after a failure."),
        click.option("--gpus", type=click.IntRange(min=0), default=None,
                     help="GPUs the scheduler may hand out (default: detected)."),
        click.option("--remote-cache", metavar="URL", envvar="MLBUILD_REMOTE_CACHE",
                     help="HTTP cache base URL (GET/PUT/HEAD <url>/cas/<digest>, <url>/ac/<key>)."),
        click.option("--remote-upload/--no-remote-upload", default=True,
                     help="Upload results to the remote cache (off: read-only, e.g. CI on pull requests)."),
        click.option("--remote-timeout", type=float, default=10.0, show_default=True, metavar="SECONDS"),
        click.option("--remote-token-file", metavar="FILE",
                     help="Bearer token file for the remote cache (else env MLBUILD_REMOTE_TOKEN)."),
        click.option("--remote-ca-bundle", metavar="FILE", help="CA bundle to verify the remote cache's TLS."),
        click.option("--remote-max-upload-size", metavar="SIZE",
                     help="Do not upload blobs larger than SIZE (e.g. 2G): huge datasets stay local."),
        click.option("--distdir", "distdirs", multiple=True, metavar="DIR",
                     help="Directory filled by `mlbuild fetch` (downloads, wheels, images) to use instead "
                          "of the network: air-gapped builds (repeatable; else `workspace: distdir:`)."),
        click.option("--downloader-config", metavar="FILE",
                     help="URL rewrites for downloads, lines of `rewrite REGEX REPLACEMENT` (internal mirrors)."),
        click.option("--profile", metavar="FILE", help="Write a Chrome trace-event JSON of the build."),
        click.option("--executor", type=click.Choice(EXECUTOR_KINDS), default=None,
                     help="Where actions run: this machine, or a Ray cluster (needs --remote-cache)."),
        click.option("--ray-address", metavar="HOST:PORT", envvar="MLBUILD_RAY_ADDRESS",
                     help="The Ray cluster for --executor=ray (what `ray start --head` printed)."),
        click.option("--remote-download", type=click.Choice(REMOTE_DOWNLOADS), default=None,
                     help="Which outputs built or cached remotely come here: only what local actions need, "
                          "the requested targets', or all (default: toplevel with --executor=ray, else all)."),
    ]
    for option in reversed(options):
        f = option(f)

    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        return f(*args, **kwargs)

    return wrapper


def make_remote(kwargs: dict, settings: dict, warn):
    """The remote cache client from flags, else the root BUILD.yaml's `workspace:` settings."""
    url = kwargs.get("remote_cache") or settings.get("remote_cache")
    if not url:
        return None  # before importing requests (~0.1 s), which only the remote needs
    from ..storage.remote import RemoteCache, RemoteOptions
    from .cache import parse_size

    size = kwargs.get("remote_max_upload_size") or settings.get("remote_max_upload_size")
    options = RemoteOptions.from_settings(
        url, upload=kwargs.get("remote_upload", True) and settings.get("remote_upload", True),
        timeout_s=kwargs.get("remote_timeout") or settings.get("remote_timeout", 10.0),
        token_file=kwargs.get("remote_token_file"), ca_bundle=kwargs.get("remote_ca_bundle"),
        max_upload_bytes=parse_size(str(size)) if size else None,
    )
    return RemoteCache(options, warn)


EXECUTOR_KINDS = ("local", "ray")
REMOTE_DOWNLOADS = ("minimal", "toplevel", "all")


def setting(kwargs: dict, settings: dict, name: str):
    """A flag's value, else the root BUILD.yaml's `workspace:` setting of the same name."""
    value = kwargs.get(name)
    return settings.get(name) if value is None else value


def make_cluster(kwargs: dict, settings: dict, remote):
    """The Ray cluster, connected, for --executor=ray (flag or workspace setting); else None."""
    if (setting(kwargs, settings, "executor") or "local") == "local":
        return None
    from ..distributed.ray_runner import RayCluster

    address = setting(kwargs, settings, "ray_address")
    return RayCluster(address and str(address), remote).connect()


def to_build_options(kwargs: dict, gpus_detected: int, distdirs: tuple = (), settings: dict | None = None,
                     cluster: tuple[int, int] | None = None) -> BuildOptions:
    """`cluster`: the (CPUs, GPUs) of a remote executor, which bound what may be in flight."""
    from pathlib import Path

    config = kwargs.get("downloader_config")
    if config:
        from ..downloads import load_rewrites  # imports requests: only when asked for
    download = setting(kwargs, settings or {}, "remote_download") or ("toplevel" if cluster else "all")
    cpus, gpus = cluster or (default_jobs(), gpus_detected)
    return BuildOptions(
        jobs=kwargs.get("jobs") or cpus,
        keep_going=kwargs.get("keep_going", False),
        gpus=kwargs["gpus"] if kwargs.get("gpus") is not None else gpus,
        memory_mb=os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**20,
        upload=kwargs.get("remote_upload", True),
        distdirs=distdirs,
        rewrites=tuple(load_rewrites(Path(config))) if config else (),
        remote_download=download,
    )
