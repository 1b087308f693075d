"""One object for each value that many targets repeat: environments, resources, names.

A graph of 100,000 targets repeats a handful of action environments, resource requests and
attribute names 100,000 times; holding each distinct value once keeps the memory analysis
needs per target small (and a pickle of them small: pickle keeps the sharing).
"""

from __future__ import annotations

import sys

_VALUES: dict = {}


def shared(value):
    """`value`, or the equal value shared before it. `value` must be hashable, and values equal
    to it must be interchangeable with it (1, 1.0 and True are equal, but not alike)."""
    if type(value) is str:
        return sys.intern(value)
    return _VALUES.setdefault(value, value)
