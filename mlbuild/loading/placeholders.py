"""The `{{kind:arg}}` placeholder syntax, parsed in one place.

Rules expand placeholders in their attributes (`{{out}}`, `{{dep:LABEL}}`, `{{config:GROUP}}`
...), and config values may use `{{config:GROUP}}` in their env. Which config groups a target
reads is found by scanning its attributes with this same parser, so the two can never
disagree about what counts as reading a group.
"""

from __future__ import annotations

import re

PLACEHOLDER = re.compile(r"\{\{\s*([a-z_]+)(?::([^}]*?))?\s*\}\}")


def config_groups_in(value) -> set[str]:
    """Every GROUP named by a `{{config:GROUP}}` anywhere inside `value` (strings, lists, dicts)."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "{{" in item:
                found.update((arg or "").strip() for kind, arg in PLACEHOLDER.findall(item) if kind == "config")
        elif isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return found


def expand_config(text: str, configuration) -> str:
    """`text` with each `{{config:GROUP}}` replaced by the configuration's value (config env)."""
    if "{{" not in text:
        return text
    return PLACEHOLDER.sub(
        lambda m: str(configuration[(m.group(2) or "").strip()]) if m.group(1) == "config" else m.group(0), text)
