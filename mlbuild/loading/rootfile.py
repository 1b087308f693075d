"""The root BUILD.yaml's schema: `workspace:` settings, `config:` groups, `config_rules:`.

Checked as a whole when the workspace loads, before configs.py builds anything from it, so
that code only ever sees well-typed values (configs.py still checks what relates values to
each other: a default among the values, references to known groups).
"""

from __future__ import annotations

from .schema import (
    ENV, NAME, NAME_LIST, TEXT, TEXT_LIST, Boolean, Choice, Field, ListOf, MapOf, Nullable, Number, OneOf, Record,
    Scalar, Text,
)

PARAMETER_TYPES = ("int", "float", "str", "bool")
REFERENCE = Text("a config value (VALUE or GROUP=VALUE)", scalar=True, pattern=r"\S(.*\S)?")
REFERENCES = ListOf(REFERENCE)

SETTINGS = Record({
    "implies": REFERENCES,
    "forces": REFERENCES,
    "defaults": REFERENCES,
    "toolchains": NAME_LIST,
    "env": ENV,
    "doc": TEXT,
}, "a mapping of value settings (implies, forces, defaults, toolchains, env, doc)", fill=False)
VALUE_NAME = Text("a value name", scalar=True, pattern=r"[^\s,=|!]+")
# A value's settings, or CM's `alias: OTHER` (configs.py checks that an alias holds nothing else).
VALUE_SETTINGS = SETTINGS.extend({"alias": VALUE_NAME},
                                 "a mapping of value settings (implies, forces, defaults, toolchains, env, doc) "
                                 "or {alias: VALUE}")

GROUP = Record({
    "default": Scalar(),
    "values": MapOf(Nullable(VALUE_SETTINGS), key=VALUE_NAME, noun="value"),
    "type": Choice(*PARAMETER_TYPES),
    "env": ENV,
    "doc": TEXT,
}, "a config group (a mapping with 'values' or 'type')", fill=False)

COMBINATION = SETTINGS.extend(
    {"when": Field(ListOf(REFERENCE, min_items=1), required=True)}, "a combination (a mapping with 'when')")

CONFIG_RULES = Record({
    "combinations": ListOf(COMBINATION),
    "incompatible": ListOf(ListOf(REFERENCE, min_items=1)),
    "bundles": MapOf(REFERENCES, key=NAME, noun="bundle"),
}, "a mapping of combinations, incompatible and bundles", fill=False)

WORKSPACE_SETTINGS = Record({
    "name": TEXT,
    "distdir": OneOf((str, TEXT), (list, TEXT_LIST)),
    "remote_cache": Text("an http:// or https:// URL", pattern=r"https?://\S+"),
    "remote_upload": Boolean(),
    "remote_timeout": Number(minimum=0.001, maximum=3600),
    "remote_max_upload_size": Text("a size like 500M or 2G", scalar=True,
                                   pattern=r"\s*\d+(\.\d+)?\s*([KMGTkmgt]?)(i?[Bb])?\s*"),
    "executor": Choice("local", "ray"),
    "ray_address": Text("a Ray cluster address like HOST:PORT", scalar=True),
    "remote_download": Choice("minimal", "toplevel", "all"),
}, "a mapping of workspace settings", fill=False, noun="setting")

ROOT = Record({
    "workspace": WORKSPACE_SETTINGS,
    "config": MapOf(GROUP, key=NAME, noun="config group"),
    "config_rules": CONFIG_RULES,
}, "a mapping of sections (workspace, config, config_rules)", fill=False, noun="section")
