"""`download`: fetch a file by URL (with mirrors), verified by a mandatory checksum.

    resnet50_onnx:
      rule: download
      urls: [https://zenodo.org/record/4735647/files/resnet50_v1.onnx, <mirror>]
      checksum: md5:f6a4da60cd5f084d97efc2c1ddb10beb
      extract: false        # true: a tar/zip unpacked safely into the output directory

The action key holds the checksum and the output name, not the URLs: the checksum fixes the
content, so moving to a mirror is no rebuild. Its executor (mlbuild/downloads/action.py) also
indexes downloads by checksum in the cache, so the same file named by two targets or two
workspaces is fetched once.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from urllib.parse import urlparse

from ..actions import Action
from ..downloads import Checksum, execute_download
from ..errors import BuildFileError
from ..loading.schema import TEXT, Integer, ListOf, RelativePath
from .base import Attr, ConfiguredTarget, Rule, RuleContext, check_relative_path


class DownloadRule(Rule):
    name = "download"
    version = 1
    executors = {"download": execute_download}
    attrs = {
        "urls": Attr(ListOf(TEXT, min_items=1), required=True, doc="URLs tried in order (mirrors)"),
        "checksum": Attr("str", required=True, doc="sha256:<hex> (or md5:<hex> from legacy CM metadata)"),
        "out": Attr(RelativePath(), doc="output name (default: the first URL's file name)"),
        "extract": Attr("bool", False),
        "strip_components": Attr(Integer(minimum=0, maximum=255), 0),
    }

    def analyze(self, ctx: RuleContext) -> ConfiguredTarget:
        attrs = ctx.attrs
        urls = [ctx.expand(str(u), "urls") for u in attrs["urls"]]
        if not urls:
            raise BuildFileError(f"{ctx.label} needs at least one URL", ctx.where("urls"))
        checksum = Checksum.parse(ctx.expand(attrs["checksum"], "checksum"), ctx.where("checksum"))
        name = attrs["out"] or PurePosixPath(urlparse(urls[0]).path).name
        check_relative_path(name, f"output '{name}'", ctx.where("out"))
        path = f"{ctx.outdir}/{name}"
        extract = bool(attrs["extract"])
        action = Action(
            label=str(ctx.label), mnemonic="Download", implementation=self.implementation,
            outputs=() if extract else (path,), output_dirs=(path,) if extract else (),
            executor="download", urls=tuple(urls), tags=tuple(attrs["tags"]),
            params=(("checksum", str(checksum)), ("extract", extract),
                    ("strip_components", attrs["strip_components"])),
            timeout_s=attrs["timeout"], resources=ctx.resources(),
        )
        return ConfiguredTarget(
            label=ctx.label, rule=self.name, deps=(), action=action,
            outputs=() if extract else (name,), output_dirs=(name,) if extract else (),
            groups_read=frozenset(ctx.groups_read), primary_output=name,
        )
