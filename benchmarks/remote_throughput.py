"""Remote cache throughput: mlbuild's upload and download of one large blob against curl's.

Starts the nginx helper on 127.0.0.1, then for one blob of --size-mib measures, in --repeat
interleaved rounds (best run kept, so a stray page-cache flush does not decide the verdict):
  upload:   RemoteCache.publish of a result holding the blob (local verify, as for a fresh
            output whose digest is not in the stat cache, + HEAD + PUT)
            vs `curl -T` of the same file;
  download: RemoteCache.fetch into an empty local cache (hash while streaming, fsync, rename)
            vs `curl -o` of the same URL, and `curl -o` followed by fsync, the durability
            mlbuild's cache promises.
Each upload starts with the blob absent from the server. The goal is a ratio >= 0.8.

    python benchmarks/remote_throughput.py --size-mib 1024
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mlbuild.storage.action_cache import ActionResult, OutputFile
from mlbuild.storage.local import LocalCache
from mlbuild.storage.nginx import NginxServer
from mlbuild.storage.remote import RemoteCache, RemoteOptions

GOAL = 0.8


def make_blob(path: Path, size_mib: int) -> None:
    """Random-looking bytes (no compression or dedup can flatter a transfer), 1 MiB at a time."""
    chunk = os.urandom(1 << 20)
    with open(path, "wb") as f:
        f.writelines(i.to_bytes(8, "little") + chunk[8:] for i in range(size_mib))


def best_times(repeat: int, cases: dict) -> dict[str, float]:
    """Best wall time of each case; rounds interleave the cases so they share the disk's moods."""
    best = {name: float("inf") for name in cases}
    for _ in range(repeat):
        for name, (prepare, run) in cases.items():
            prepare()
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def curl(*args: str) -> None:
    subprocess.run(["curl", "--silent", "--show-error", "--fail", *args], check=True)


def fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dir", type=Path, default=None, help="scratch dir (default: a temp dir)")
    args = parser.parse_args()
    if shutil.which("curl") is None:
        sys.exit("curl is needed for the comparison")

    work = Path(tempfile.mkdtemp(prefix="mlbuild-bench-", dir=args.dir))
    try:
        with NginxServer(work / "server") as server:
            source = LocalCache(work / "source")
            blob = work / "blob"
            make_blob(blob, args.size_mib)
            digest = source.cas.put_file(blob, take=True)
            result = ActionResult(outputs=(OutputFile("model.bin", digest, blob.stat().st_size),))
            key = digest  # any 64-hex name will do for a one-entry benchmark
            url = f"{server.url}/cas/{digest}"
            on_server = server.data_dir / "cas" / digest
            remote = RemoteCache(RemoteOptions(server.url, timeout_s=60), warn=print)
            fetched = work / "curl-download"

            def forget_server_blob():
                on_server.unlink(missing_ok=True)
                source.stat_cache.forget(source.cas.blob_path(digest))  # publish hashes it again
                os.sync()

            def fresh_cache():
                shutil.rmtree(work / "dest", ignore_errors=True)
                os.sync()
                return LocalCache(work / "dest")

            def forget_curl_download():
                fetched.unlink(missing_ok=True)
                os.sync()

            def curl_get_fsync():
                curl("-o", str(fetched), url)
                fsync_file(fetched)

            dest = {}
            timings = best_times(
                args.repeat,
                {
                    "mlbuild upload": (forget_server_blob, lambda: remote.publish(key, result, source)),
                    "curl -T": (
                        forget_server_blob,
                        lambda: curl("-T", str(blob), url, "-o", os.devnull),
                    ),
                    "mlbuild download": (
                        lambda: dest.update(cache=fresh_cache()),
                        lambda: dest.update(result=remote.fetch(key, dest["cache"])),
                    ),
                    "curl -o": (forget_curl_download, lambda: curl("-o", str(fetched), url)),
                    "curl -o + fsync": (forget_curl_download, curl_get_fsync),
                },
            )
            remote.close()
            if dest["result"] != result or remote.stats.errors:
                sys.exit(f"benchmark transfer failed: {remote.stats}")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rate = {name: args.size_mib / t for name, t in timings.items()}
    for name, mib_s in rate.items():
        print(f"{name:18} {mib_s:8.0f} MiB/s  ({timings[name]:.2f} s)")
    ratios = {
        "upload   mlbuild / curl -T": rate["mlbuild upload"] / rate["curl -T"],
        "download mlbuild / curl -o": rate["mlbuild download"] / rate["curl -o"],
        "download mlbuild / curl -o + fsync": rate["mlbuild download"] / rate["curl -o + fsync"],
    }
    for name, ratio in ratios.items():
        print(f"{name:36} {ratio:5.2f}  {'ok' if ratio >= GOAL else f'below {GOAL}'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
