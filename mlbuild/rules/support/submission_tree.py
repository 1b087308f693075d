"""Assemble an MLPerf inference submission tree from bench and compliance outputs, then check it.

The spec (--spec, JSON, written by the `submission` rule) names the division, submitter, system,
benchmark, the user's system fields and measurements, and per scenario the bench's output
directory (performance/, accuracy/) and its compliance tests' directories. The tree follows
mlcommons/inference tools/submission/submission_structure.md:

    <division>/<submitter>/{code,src}/<benchmark>/README.md
    <division>/<submitter>/systems/<system>.json     detected facts + the user's fields
    <division>/<submitter>/results/<system>/<benchmark>/<scenario>/
        accuracy/{accuracy.txt, mlperf_log_accuracy.json, mlperf_log_detail.txt, mlperf_log_summary.txt}
        performance/run_1/{mlperf_log_detail.txt, mlperf_log_summary.txt}
        TEST01/..., TEST04/...      as the compliance targets laid them out
        measurements.json, user.conf, README.md

Accuracy logs are truncated as the official truncate_accuracy_log.py does (first and last 4 KiB
kept, the full file's sha256 appended to accuracy.txt as `hash=`). The tarball is reproducible
(sorted entries, zero mtimes and owners). Finally submission_check.py checks the tree; its errors
fail the action.
"""

import os
import sys
import argparse
import gzip
import hashlib
import io
import json
import shutil
import tarfile

from submission_check import check_and_print

VIEWABLE_SIZE = 4096
# submission_structure.md names the code directory `code`; the v6.x checker looks for `src`.
CODE_DIRS = ("code", "src")


def truncate_accuracy_log(accuracy_dir: str) -> None:
    log = os.path.join(accuracy_dir, "mlperf_log_accuracy.json")
    if os.path.getsize(log) < VIEWABLE_SIZE:
        return
    digest = hashlib.sha256()
    with open(log, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
        f.seek(0)
        start = f.read(VIEWABLE_SIZE)
        f.seek(-VIEWABLE_SIZE, os.SEEK_END)
        end = f.read()
    with open(os.path.join(accuracy_dir, "accuracy.txt"), "a") as f:
        f.write(f"\nhash={digest.hexdigest()}\n")
    with open(log, "wb") as f:
        f.write(start + b"\n\n...\n\n" + end)


def system_description(spec: dict, result: dict) -> dict:
    """Detected facts of the measured machine and software, overridden by the user's fields."""
    host, engine = result.get("host") or {}, result.get("engine") or {}
    backend = engine.get("backend", "")
    version = engine.get(f"{backend}_version") or ""
    accelerator = engine.get("gpu")
    detected = {
        "division": spec["division"], "submitter": spec["submitter"], "status": spec["status"],
        "system_name": spec["system_name"], "system_type": spec["category"], "number_of_nodes": 1,
        "host_processor_model_name": host.get("cpu_model") or "unknown",
        "host_processors_per_node": 1, "host_processor_core_count": host.get("logical_cpus"),
        "host_memory_capacity": f"{host.get('memory_gib')} GiB" if host.get("memory_gib") else "unknown",
        "accelerators_per_node": "1" if accelerator else "0",  # the checker takes a 0 for an empty answer "accelerator_model_name": accelerator or "N/A",
        "accelerator_memory_capacity": "N/A", "accelerator_host_interconnect": "N/A",
        "accelerator_memory_configuration": "N/A", "accelerator_interconnect": "N/A",
        "framework": f"{backend} {version}".strip(), "operating_system": host.get("os") or "unknown",
        "other_software_stack": f"Python {host.get('python')}, MLPerf LoadGen {result.get('loadgen_version')}, "
                                "mlbuild",
    }
    if not accelerator:  # a CPU-only system answers the accelerator fields with what there is: none
        detected.update({k: "None" for k in ("accelerator_model_name", "accelerator_memory_capacity",
                                             "accelerator_host_interconnect", "accelerator_memory_configuration",
                                             "accelerator_interconnect")})
    return {**detected, **spec["system"]}


def scenario_readme(spec: dict, scenario: str, entry: dict, result: dict) -> str:
    return "\n".join([
        f"# {spec['benchmark']} {scenario}", "",
        f"Produced by mlbuild: `mlbuild build {spec['label']}` (bench `{entry['bench']}`, run style "
        f"`{result.get('run_style')}`).", "",
        f"- engine: {result.get('engine', {}).get('backend')} ({result.get('engine', {}).get('sha256', '')[:16]}...)",
        f"- batch size {result.get('batch_size')}, {result.get('threads')} thread(s)",
        f"- settings: LoadGen's mlperf.conf for `{result.get('model_name')}` plus user.conf (beside this file)",
        f"- compliance: {', '.join(sorted(entry['compliance'])) or 'none'}", "",
    ])


def assemble(spec: dict, out: str) -> str:
    base = os.path.join(out, spec["division"], spec["submitter"])
    for code_dir in CODE_DIRS:
        code = os.path.join(base, code_dir, spec["benchmark"])
        os.makedirs(code)
        with open(os.path.join(code, "README.md"), "w") as f:
            f.write(f"# {spec['benchmark']}\n\nBuilt and run by mlbuild from the workspace target {spec['label']};\n"
                    "the harness is mlbuild's rules/support/loadgen_harness.py, LoadGen from the `mlcommons-loadgen` "
                    "wheel.\n")
    any_result = None
    for scenario, entry in sorted(spec["results"].items()):
        bench = entry["bench_dir"]
        target = os.path.join(base, "results", spec["system_id"], spec["benchmark"], scenario)
        with open(os.path.join(bench, "performance", "result.json")) as f:
            result = json.load(f)
        any_result = any_result or result
        run_1 = os.path.join(target, "performance", "run_1")
        os.makedirs(run_1)
        for name in ("mlperf_log_detail.txt", "mlperf_log_summary.txt"):
            shutil.copy(os.path.join(bench, "performance", name), run_1)
        accuracy = os.path.join(target, "accuracy")
        os.makedirs(accuracy)
        for name in ("accuracy.txt", "mlperf_log_accuracy.json", "mlperf_log_detail.txt", "mlperf_log_summary.txt"):
            shutil.copy(os.path.join(bench, "accuracy", name), accuracy)
        truncate_accuracy_log(accuracy)
        shutil.copy(os.path.join(bench, "performance", "user.conf"), target)
        for test, test_dir in sorted(entry["compliance"].items()):
            shutil.copytree(test_dir, os.path.join(target, test))
            if test == "TEST01":
                truncate_accuracy_log(os.path.join(target, test, "accuracy"))
        measurements = {**spec["measurements"], "accuracy_target": entry["accuracy_target"]}
        with open(os.path.join(target, "measurements.json"), "w") as f:
            json.dump(measurements, f, indent=2, sort_keys=True)
        with open(os.path.join(target, "README.md"), "w") as f:
            f.write(scenario_readme(spec, scenario, entry, result))
    os.makedirs(os.path.join(base, "systems"))
    with open(os.path.join(base, "systems", f"{spec['system_id']}.json"), "w") as f:
        json.dump(system_description(spec, any_result), f, indent=2, sort_keys=True)
    if spec.get("model_mapping"):
        with open(os.path.join(base, "model_mapping.json"), "w") as f:
            json.dump(spec["model_mapping"], f, indent=2, sort_keys=True)
    return base


def reproducible_tarball(tree: str, path: str) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for current, dirs, files in os.walk(tree):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(current, name)
                info = tar.gettarinfo(full, arcname=os.path.relpath(full, os.path.dirname(tree)))
                info.mtime, info.uid, info.gid, info.uname, info.gname = 0, 0, 0, "", ""
                if info.isfile():
                    with open(full, "rb") as f:
                        tar.addfile(info, f)
                else:
                    tar.addfile(info)
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0, filename="") as gz:
        gz.write(buffer.getvalue())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", required=True, help="JSON spec written by the submission rule")
    parser.add_argument("--out", required=True, help="the tree's root directory")
    parser.add_argument("--tarball", required=True)
    args = parser.parse_args(argv)
    spec = json.loads(args.spec)
    assemble(spec, args.out)
    reproducible_tarball(args.out, args.tarball)
    print(f"submission tree {args.out}, tarball {args.tarball}")
    return check_and_print(args.out, errors_to=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
