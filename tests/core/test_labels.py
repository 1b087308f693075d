"""Labels and target patterns: the grammar, its round trip, and clear errors for the rest."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlbuild.errors import BuildFileError
from mlbuild.loading.labels import Label, Pattern

segments = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.\-]{0,11}", fullmatch=True)
packages = st.lists(segments, min_size=1, max_size=4).map("/".join)
names = st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.+=,@~\-]{0,15}", fullmatch=True)


@given(packages, names)
def test_round_trip(package, name):
    label = Label(package, name)
    assert str(label) == f"//{package}:{name}"
    assert Label.parse(str(label)) == label


@given(packages, names)
def test_relative_label_takes_current_package(package, name):
    assert Label.parse(f":{name}", current_package=package) == Label(package, name)


@given(packages)
def test_package_shorthand_names_the_last_segment(package):
    assert Label.parse(f"//{package}") == Label(package, package.rsplit("/", 1)[-1])


@given(st.text(max_size=30))
def test_any_text_parses_or_raises_build_file_error(text):
    try:
        label = Label.parse(text, current_package="pkg")
    except BuildFileError as exc:
        assert "label" in str(exc)
    else:
        assert Label.parse(str(label)) == label


@pytest.mark.parametrize("text", [
    "", "pkg:name", "pkg", "//", "//:name", "///a:b", "//a//b:c", "//a/../b:c", "//../a:b",
    "//a:", "//a:b:c", "//a:b/c", "//a b:c", "//a:b c", "//-a:b", "//.a:b", "//a:.b",
    "//a:$x", "//a/:b",
    # `$` in the label regexes also matches before a trailing newline
    "//a:b\n", "//a\n:b",
])
def test_invalid_labels_raise_build_file_error(text):
    with pytest.raises(BuildFileError):
        Label.parse(text, current_package="pkg")


def test_relative_label_outside_a_package_is_an_error():
    with pytest.raises(BuildFileError, match="outside a package"):
        Label.parse(":name")


def test_non_string_label_is_an_error():
    with pytest.raises(BuildFileError, match="expected a label string"):
        Label.parse(["//a:b"])  # type: ignore[arg-type]


@pytest.mark.parametrize("text, expected", [
    ("//...", Pattern("", None, True)),
    ("//pkg/...", Pattern("pkg", None, True)),
    ("//pkg/sub/...", Pattern("pkg/sub", None, True)),
    ("//pkg:all", Pattern("pkg", None, False)),
    ("//pkg/sub:*", Pattern("pkg/sub", None, False)),
    ("//pkg:name", Pattern("pkg", "name", False)),
    ("//pkg/sub", Pattern("pkg/sub", "sub", False)),
])
def test_pattern_parsing(text, expected):
    assert Pattern.parse(text) == expected


@pytest.mark.parametrize("text", ["pkg/...", "...", "//../...", "//a/../b/...", "//:all", "//a b/...", "x"])
def test_invalid_patterns_raise_build_file_error(text):
    with pytest.raises(BuildFileError):
        Pattern.parse(text)


@pytest.mark.parametrize("pattern, package, matches", [
    ("//...", "a", True),
    ("//...", "a/b/c", True),
    ("//a/...", "a", True),
    ("//a/...", "a/b", True),
    ("//a/...", "ab", False),  # a prefix of the name is not a subpackage
    ("//a/...", "b/a", False),
    ("//a:all", "a", True),
    ("//a:all", "a/b", False),
    ("//a:x", "a", True),
    ("//a:x", "a/b", False),
])
def test_pattern_matches_package(pattern, package, matches):
    assert Pattern.parse(pattern).matches_package(package) is matches


@given(packages, names)
def test_single_label_pattern_round_trip(package, name):
    pattern = Pattern.parse(f"//{package}:{name}")
    if name in ("all", "*"):
        assert pattern == Pattern(package, None, False)
    else:
        assert pattern == Pattern(package, name, False)


def test_workspace_expansion_leaves_manual_targets_out_of_patterns(workspace):
    from mlbuild.loading.workspace import Workspace

    mlb = workspace({
        "BUILD.yaml": "workspace: {name: t}\n",
        "targets/a/BUILD.yaml": "x: {rule: command, cmd: 'true'}\n"
                                "m: {rule: command, cmd: 'true', tags: [manual]}\n",
        "targets/a/sub/BUILD.yaml": "y: {rule: command, cmd: 'true'}\n",
        "targets/ab/BUILD.yaml": "z: {rule: command, cmd: 'true'}\n",
    })
    ws = Workspace(mlb.root)
    assert set(map(str, ws.expand(["//..."]))) == {"//a:x", "//a/sub:y", "//ab:z"}
    assert set(map(str, ws.expand(["//a/..."]))) == {"//a:x", "//a/sub:y"}
    assert set(map(str, ws.expand(["//a:all"]))) == {"//a:x"}
    assert set(map(str, ws.expand(["//a:m"]))) == {"//a:m"}
    with pytest.raises(BuildFileError, match="no target 'q'"):
        ws.expand(["//a:q"])
    with pytest.raises(BuildFileError, match="no package"):
        ws.expand(["//nope:x"])
