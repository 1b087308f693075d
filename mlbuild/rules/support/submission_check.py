"""Check an MLPerf inference submission tree for what the official submission checker checks.

Walks `<division>/<submitter>/` (submission_structure.md of mlcommons/inference; the code
under src/, where the v6.x checker looks): the system
descriptions and their required fields, and for each results/<system>/<benchmark>/<scenario>/
the required files (measurements.json and its fields, user.conf, README.md, accuracy/,
performance/run_1/), LoadGen's verdict (VALID, no errors, the scenario of the directory), the
durations and query counts of the run style, the accuracy against its target, and the
compliance tests that are present (required in the closed division for the benchmarks MLPerf
lists). A run of style `test` (its user.conf says so, or its durations are below MLPerf's) is
never valid for submission: refused in the closed division, a warning in the open one.

This is mlbuild's reading of the rules, not the official tool: `official_command` prints the
command line that runs mlcommons/inference's checker on the same tree.

Standard library only (mlbuild runs it in its own interpreter, a submission action in the
bench's). Exit codes: 0 no errors (warnings allowed), 1 errors, 2 not a directory.
"""

import os
import sys
import argparse
import json
import re

from mlperf_logs import LogError, read_detail

DIVISIONS = ("closed", "open", "network")
AVAILABILITIES = ("available", "preview", "rdi")
SCENARIOS = ("Offline", "Server", "SingleStream", "MultiStream", "Interactive")
TEST_DURATION_MS = 600_000
OFFLINE_MIN_SAMPLES = 24_576
ACCURACY_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt", "accuracy.txt", "mlperf_log_accuracy.json")
PERF_FILES = ("mlperf_log_summary.txt", "mlperf_log_detail.txt")
MEASURE_FILES = ("user.conf", "README.md", "measurements.json")
MEASUREMENT_FIELDS = ("input_data_types", "retraining", "starting_weights_filename", "weight_data_types",
                      "weight_transformations")
SYSTEM_FIELDS = (
    "division", "submitter", "status", "system_name", "number_of_nodes", "host_processor_model_name",
    "host_processors_per_node", "host_processor_core_count", "host_memory_capacity", "host_storage_capacity",
    "host_storage_type", "accelerators_per_node", "accelerator_model_name", "accelerator_memory_capacity",
    "framework", "operating_system", "system_type", "other_software_stack", "host_processor_frequency",
    "host_processor_caches", "host_memory_configuration", "host_processor_interconnect", "host_networking",
    "host_networking_topology", "accelerator_frequency", "accelerator_host_interconnect",
    "accelerator_interconnect", "accelerator_interconnect_topology", "accelerator_memory_configuration",
    "accelerator_on-chip_memories", "cooling", "hw_notes", "sw_notes", "host_network_card_count",
    "system_type_detail",
)
MEANINGFUL_SYSTEM_FIELDS = (
    "division", "submitter", "system_type", "status", "system_name", "number_of_nodes",
    "host_processor_model_name", "host_processors_per_node", "host_processor_core_count", "host_memory_capacity",
    "host_memory_configuration", "host_storage_capacity", "host_storage_type", "host_networking",
    "host_network_card_count", "host_networking_topology", "accelerators_per_node", "accelerator_model_name",
    "accelerator_memory_capacity", "accelerator_host_interconnect", "accelerator_memory_configuration",
    "accelerator_interconnect", "cooling", "framework", "operating_system", "other_software_stack",
)
# Per official benchmark (tools/submission/submission_checker/constants.py, v6.1): accuracy target
# (percent), minimum query counts, performance sample count, dataset size, Server latency bound,
# and the compliance tests that apply.
BENCHMARKS = {
    "resnet": {"accuracy": 76.46 * 0.99, "min_queries": {"SingleStream": 1024, "MultiStream": 270336,
                                                         "Server": 270336, "Offline": 1},
               "performance_sample_count": 1024, "dataset_size": 50000, "server_latency_ns": 15_000_000,
               "tests": ("TEST01", "TEST04")},
}
ALIASES = {"resnet50": "resnet"}
ACCURACY_PATTERN = re.compile(r"^(?:\{\"accuracy|accuracy)[\": ]*=?\s*([\d.]+)")
TEST_STYLE_MARK = "run style 'test'"
DECLARED_TOLERANCE = "threshold declared by the compliance target"


class Report:
    """Errors and warnings, each with the path it is about."""

    def __init__(self, root: str):
        self.root = root
        self.errors: list[str] = []
        self.warnings: list[str] = []

    def error(self, path: str, message: str) -> None:
        self.errors.append(f"{os.path.relpath(path, self.root)}: {message}")

    def warn(self, path: str, message: str) -> None:
        self.warnings.append(f"{os.path.relpath(path, self.root)}: {message}")


def _dirs(path: str) -> list[str]:
    return sorted(d for d in os.listdir(path) if os.path.isdir(os.path.join(path, d))) if os.path.isdir(path) else []


def _missing(directory: str, names) -> list[str]:
    return [n for n in names if not os.path.isfile(os.path.join(directory, n))
            or os.path.getsize(os.path.join(directory, n)) == 0]


def check_tree(root: str) -> Report:
    report = Report(root)
    divisions = [d for d in _dirs(root) if d in DIVISIONS]
    if not divisions:
        report.error(root, f"no division directory ({', '.join(DIVISIONS)}): not a submission tree")
        return report
    for division in divisions:
        for submitter in _dirs(os.path.join(root, division)):
            _check_submitter(report, os.path.join(root, division, submitter), division, submitter)
    return report


def _check_submitter(report: Report, base: str, division: str, submitter: str) -> None:
    systems_dir, results_dir = os.path.join(base, "systems"), os.path.join(base, "results")
    for required in (systems_dir, results_dir, os.path.join(base, "src")):
        if not os.path.isdir(required):
            report.error(required, "missing directory")
    mapping = {}
    if division == "open" and os.path.isfile(os.path.join(base, "model_mapping.json")):
        try:
            with open(os.path.join(base, "model_mapping.json")) as f:
                mapping = json.load(f)
        except ValueError as e:
            report.error(os.path.join(base, "model_mapping.json"), f"not JSON: {e}")
    for system in _dirs(results_dir):
        description = os.path.join(systems_dir, f"{system}.json")
        _check_system(report, description, division, submitter)
        for benchmark in _dirs(os.path.join(results_dir, system)):
            if not os.path.isdir(os.path.join(base, "src", benchmark)):
                report.error(os.path.join(base, "src", benchmark), "missing code directory for the benchmark")
            name = mapping.get(benchmark, benchmark)
            official = BENCHMARKS.get(ALIASES.get(name, name))
            if division == "closed" and official is None:
                report.error(os.path.join(results_dir, system, benchmark),
                             "not an MLPerf benchmark: the closed division takes only those")
            for scenario in _dirs(os.path.join(results_dir, system, benchmark)):
                _check_scenario(report, os.path.join(results_dir, system, benchmark, scenario), division,
                                scenario, official)
            if division == "open" and official is None:
                report.warn(os.path.join(results_dir, system, benchmark), "maps to no MLPerf benchmark "
                            "(model_mapping.json): the official checker cannot score it")


def _check_system(report: Report, path: str, division: str, submitter: str) -> None:
    try:
        with open(path) as f:
            system = json.load(f)
    except (OSError, ValueError) as e:
        report.error(path, f"missing or unreadable system description ({e})")
        return
    for field in SYSTEM_FIELDS:
        if field not in system:
            report.error(path, f"missing system field '{field}'")
        elif field in MEANINGFUL_SYSTEM_FIELDS and (not system[field] or str(system[field]).strip() in ("N/A", "TBD")):
            report.error(path, f"system field '{field}' needs a meaningful value, has {system[field]!r}")
    if system.get("division") != division:
        report.error(path, f"division is {system.get('division')!r} but the tree's is '{division}'")
    if system.get("submitter") != submitter:
        report.error(path, f"submitter is {system.get('submitter')!r} but the tree's is '{submitter}'")
    if system.get("status") not in AVAILABILITIES:
        report.error(path, f"status {system.get('status')!r} is not one of {', '.join(AVAILABILITIES)}")


def _check_scenario(report: Report, path: str, division: str, scenario: str, official) -> None:
    if scenario not in SCENARIOS:
        report.error(path, f"unknown scenario directory (scenarios: {', '.join(SCENARIOS)})")
        return
    for name in _missing(path, MEASURE_FILES):
        report.error(os.path.join(path, name), "missing or empty")
    measurements = {}
    try:
        with open(os.path.join(path, "measurements.json")) as f:
            measurements = json.load(f)
        for field in MEASUREMENT_FIELDS:
            if not measurements.get(field):
                report.error(os.path.join(path, "measurements.json"), f"field '{field}' missing or empty")
    except (OSError, ValueError):
        pass
    test_style = False
    try:
        with open(os.path.join(path, "user.conf")) as f:
            test_style = TEST_STYLE_MARK in f.read()
    except OSError:
        pass
    perf = os.path.join(path, "performance", "run_1")
    values = _check_run(report, perf, PERF_FILES, scenario, performance=True)
    test_style = test_style or (values is not None and values.get("effective_min_duration_ms", 0) < TEST_DURATION_MS)
    if test_style:
        message = "run style 'test' (short durations): NOT VALID FOR SUBMISSION"
        (report.error if division == "closed" else report.warn)(path, message + (
            "; the closed division refuses it" if division == "closed" else ""))
    accuracy_dir = os.path.join(path, "accuracy")
    accuracy_values = _check_run(report, accuracy_dir, ACCURACY_FILES, scenario, performance=False)
    if accuracy_values is not None:
        _check_accuracy(report, accuracy_dir, official, measurements, division)
    if official is not None:
        # What MLPerf requires of the benchmark's runs; a test-style run is short of it by design.
        record = report.warn if test_style and division != "closed" else report.error
        for where, message in _benchmark_shortfalls(official, scenario, values or {}, accuracy_values or {}):
            record(os.path.join(path, where), message)
    for test in ("TEST01", "TEST04"):
        test_dir = os.path.join(path, test)
        if os.path.isdir(test_dir):
            _check_compliance(report, test_dir, test, scenario, division, test_style)
        elif division == "closed" and official is not None and test in official["tests"]:
            report.error(test_dir, f"{test} is required for this benchmark in the closed division")


def _benchmark_shortfalls(official: dict, scenario: str, perf: dict, accuracy: dict):
    """(file, message) for each of MLPerf's per-benchmark minimums a run misses."""
    detail = "performance/run_1/mlperf_log_detail.txt"
    if perf:
        minimum = official["min_queries"].get(scenario, 1)
        count = perf.get("result_query_count", 0)
        if scenario == "Offline":
            minimum, count = OFFLINE_MIN_SAMPLES, count * perf.get("generated_samples_per_query", 1)
        if count < minimum:
            yield detail, f"{count} queries/samples, MLPerf requires at least {minimum} for {scenario}"
        if perf.get("effective_performance_sample_count", 0) < official["performance_sample_count"]:
            yield detail, (f"performance_sample_count {perf.get('effective_performance_sample_count')}, "
                           f"MLPerf requires at least {official['performance_sample_count']}")
        bound = official["server_latency_ns"]
        if scenario == "Server" and perf.get("effective_target_latency_ns", 0) > bound:
            yield detail, f"Server latency bound {perf.get('effective_target_latency_ns')} ns, MLPerf's is {bound} ns"
    if accuracy and accuracy.get("qsl_reported_total_count", 0) < official["dataset_size"]:
        yield "accuracy/mlperf_log_detail.txt", (f"the accuracy run covers {accuracy.get('qsl_reported_total_count')} "
                                                 f"samples, the benchmark's dataset has {official['dataset_size']}")


def _check_run(report: Report, directory: str, files, scenario: str, performance: bool):
    """A LoadGen run's files and verdict; its detail log's values, or None when unusable."""
    missing = _missing(directory, files)
    for name in missing:
        report.error(os.path.join(directory, name), "missing or empty")
    if "mlperf_log_detail.txt" in missing:
        return None
    detail = os.path.join(directory, "mlperf_log_detail.txt")
    try:
        values, errors = read_detail(detail)
    except LogError as e:
        report.error(detail, str(e))
        return None
    for error in errors:
        report.error(detail, f"LoadGen error: {error}")
    if values.get("effective_scenario") != scenario:
        report.error(detail, f"a {values.get('effective_scenario')} run in the {scenario} directory")
    if performance and values.get("result_validity") != "VALID":
        report.error(detail, f"LoadGen result is {values.get('result_validity')}, not VALID")
    return values


def _check_accuracy(report: Report, directory: str, official, measurements: dict, division: str) -> None:
    path = os.path.join(directory, "accuracy.txt")
    with open(path, encoding="utf-8", errors="replace") as f:
        lines = f.read().splitlines()
    found = next((ACCURACY_PATTERN.match(line) for line in lines if ACCURACY_PATTERN.match(line)), None)
    if found is None:
        report.error(path, "no 'accuracy=XX.XXX%' line")
        return
    if os.path.getsize(os.path.join(directory, "mlperf_log_accuracy.json")) > 10 * 1024 and \
            not any(line.startswith("hash=") for line in lines):
        report.error(path, "mlperf_log_accuracy.json is not truncated (no hash= line)")
    # The closed division is held to MLPerf's target; an open result to the one its bench declared.
    target = official["accuracy"] if division == "closed" and official else measurements.get("accuracy_target")
    if target is None:
        report.warn(path, "no accuracy target known for this benchmark (measurements.json accuracy_target)")
    elif float(found.group(1)) < float(target):
        report.error(path, f"accuracy {found.group(1)}% is below the target {float(target):.3f}%")


def _check_compliance(report: Report, directory: str, test: str, scenario: str, division: str,
                      test_style: bool) -> None:
    _check_run(report, os.path.join(directory, "performance", "run_1"), PERF_FILES, scenario, performance=True)
    verdicts = ["verify_performance.txt"] + (["verify_accuracy.txt"] if test == "TEST01" else [])
    for name in verdicts:
        path = os.path.join(directory, name)
        try:
            with open(path) as f:
                text = f.read()
        except OSError:
            report.error(path, "missing")
            continue
        if DECLARED_TOLERANCE in text:
            (report.error if division == "closed" else report.warn)(path, "judged with a declared tolerance, "
                                                                          "not MLPerf's")
        if "TEST PASS" not in text:
            lenient = name == "verify_performance.txt" and test_style and division != "closed"
            (report.warn if lenient else report.error)(path, f"{test} did not pass" + (
                " (performance not enforced in run style 'test')" if lenient else ""))
    if test == "TEST01" and _missing(os.path.join(directory, "accuracy"), ("mlperf_log_accuracy.json",)):
        report.error(os.path.join(directory, "accuracy"), "missing mlperf_log_accuracy.json")


def official_command(root: str, version: str = "v6.1") -> str:
    """The official checker's command line for the tree (run beside a checkout of mlcommons/inference)."""
    submitters = sorted({s for d in _dirs(root) if d in DIVISIONS for s in _dirs(os.path.join(root, d))})
    submitter = f" --submitter {submitters[0]}" if len(submitters) == 1 else ""
    return (f"python3 -m inference.tools.submission.submission_checker.main --input {os.path.abspath(root)} "
            f"--version {version}{submitter} --csv summary.csv")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("root", help="the submission tree (holding closed/ or open/)")
    args = parser.parse_args(argv)
    if not os.path.isdir(args.root):
        print(f"submission check: error: {args.root} is not a directory", file=sys.stderr)
        return 2
    return check_and_print(args.root)


def check_and_print(root: str, errors_to=None) -> int:
    """Check the tree, print every finding, the verdict and the official command; the exit code.
    (An action shows its stderr when it fails: the submission action sends errors there.)"""
    report = check_tree(root)
    for warning in report.warnings:
        print(f"warning: {warning}")
    for error in report.errors:
        print(f"error: {error}", file=errors_to or sys.stdout)
    verdict = "FAILED" if report.errors else "passed"
    print(f"submission check {verdict}: {len(report.errors)} error(s), {len(report.warnings)} warning(s) in {root}")
    print(f"official checker: {official_command(root)}")
    return 1 if report.errors else 0


if __name__ == "__main__":
    sys.exit(main())
