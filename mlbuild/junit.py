"""`--junit-xml FILE`: test and bench results in the JUnit XML that CI systems display."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path


def write_junit(rows: list[dict], path: Path, suite: str = "mlbuild") -> None:
    """One testcase per (target, configuration) row of `mlbuild test`."""
    failures = sum(1 for r in rows if r["verdict"] == "FAILED")
    skipped = sum(1 for r in rows if r["verdict"] not in ("PASSED", "FAILED"))
    total_time = sum(r.get("duration_s") or 0 for r in rows)
    root = ET.Element("testsuites")
    suite_el = ET.SubElement(root, "testsuite", name=suite, tests=str(len(rows)), failures=str(failures),
                             skipped=str(skipped), time=f"{total_time:.3f}")
    for row in rows:
        package, _, name = row["target"][2:].partition(":")
        case = ET.SubElement(suite_el, "testcase", classname=f"{package}[{row['config']}]", name=name,
                             time=f"{row.get('duration_s') or 0:.3f}")
        properties = ET.SubElement(case, "properties")
        for key in ("scenario", "samples_per_second", "latency_p99_ms", "accuracy", "cached"):
            if row.get(key) is not None:
                ET.SubElement(properties, "property", name=key, value=str(row[key]))
        if row["verdict"] == "FAILED":
            failure = ET.SubElement(case, "failure", message=(row.get("failure") or "failed").splitlines()[0])
            failure.text = row.get("failure") or ""
        elif row["verdict"] != "PASSED":
            ET.SubElement(case, "skipped", message=f"not run: {row['verdict'].lower()}")
    ET.indent(root)
    ET.ElementTree(root).write(path, encoding="utf-8", xml_declaration=True)
