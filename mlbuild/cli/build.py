"""`mlbuild build`, `run` and `test`: analyze, schedule, execute or reuse, report."""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import click

from ..distributed.placement import runs_remotely
from ..errors import EXIT_BUILD_FAILED, NothingToDoError
from ..execution import noop
from ..execution.outcome import Status
from ..execution.output_tree import point_convenience_link
from ..junit import write_junit
from ..loading.workspace import find_workspace_root
from ..profile import TraceRecorder
from ..progress import make_progress, summary_line, summary_text
from ..toolchains.host import gpus
from .completion import complete_labels
from .main import cli
from .options import build_options, make_cluster, make_remote, to_build_options
from .session import Session, config_tokens


def _start(ctx, targets, kwargs):
    session = Session(ctx.obj, kwargs["configs"], kwargs.get("distdirs") or (), kwargs.get("sweeps") or ())
    return session, session.analyze(list(targets))


def sweep_option(f):
    return click.option(
        "--sweep", "sweeps", multiple=True, metavar="GROUP=V1,V2",
        help="Also build in each of these values (repeatable: the matrix of all); one build, shared actions once.",
    )(f)


def _run_build(session: Session, graph, kwargs, *, tests=None, force=None, toplevel=None):
    settings = session.workspace.settings
    progress = None

    def warn(message: str) -> None:
        if progress is not None:
            progress.message(f"warning: {message}")
        else:
            click.echo(f"warning: {message}", err=True)

    remote = make_remote(kwargs, settings, warn)
    cluster = None
    try:
        cluster = make_cluster(kwargs, settings, remote)
        if cluster is not None:  # a cluster that cannot run this build is refused before anything runs
            cluster.check([t.action for t in graph.values() if t.action is not None and runs_remotely(t.action, None)])
        options = to_build_options(kwargs, len(gpus()) if cluster is None else 0, session.distdirs, settings,
                                   cluster.capacity() if cluster is not None else None)
        progress = make_progress(len(graph))
        trace = TraceRecorder() if kwargs.get("profile") else None
        builder = session.builder(options, progress, remote=remote, observers=[trace] if trace else (),
                                  cluster=cluster)
        try:
            summary = builder.build(graph, tests=tests, force=force, toplevel=toplevel)
        finally:
            progress.close()
            if trace:
                trace.write(Path(kwargs["profile"]))
    finally:
        if cluster is not None:
            cluster.close()
        if remote is not None:
            remote.close()
    internal = summary.internal_error()
    if internal is not None:  # a bug in mlbuild, not a failed build: exit 70 (traceback with --verbose)
        raise internal
    for label, message in summary.failures():
        click.echo(message, err=True)
        logs = _failed_test_logs(builder, label, summary.outcomes[label])
        if logs:
            click.echo(f"  logs: {logs}", err=True)
    click.echo(summary_line(summary), err=True)
    if remote is not None:
        stats = remote.stats
        click.echo(f"remote cache {remote.url}: {stats.hits} hits, {stats.misses} misses, "
                   f"{stats.uploads} blobs uploaded ({stats.skipped_uploads} already there), "
                   f"{stats.bytes_down / 2**20:.1f} MiB down, {stats.bytes_up / 2**20:.1f} MiB up", err=True)
    return builder, summary


def _failed_test_logs(builder, label, outcome) -> str:
    """Where a failed test left what to read: its outputs (LoadGen's logs) and its stdout/stderr."""
    result = outcome.result
    if result is None or outcome.status != Status.TEST_FAILED:
        return ""
    places = [f"{os.path.relpath(builder.output_tree.directory(label), builder.workspace.root)}/"]
    places += [f"{name} {builder.cache.cas.blob_path(digest)}"
               for name, digest in (("stdout", result.stdout_digest), ("stderr", result.stderr_digest)) if digest]
    return ", ".join(places)


def _without_tests(graph):
    """Drop test actions nothing depends on: `build` builds what tests need, not the tests."""
    needed = {dep for target in graph.values() for dep in target.deps}
    return {label: target for label, target in graph.items() if not target.is_test or label in needed}


@cli.command()
@click.argument("targets", nargs=-1, required=True, shell_complete=complete_labels)
@build_options
@sweep_option
@click.pass_context
def build(ctx, targets, **kwargs):
    """Build TARGETS (labels or patterns like //pkg/... and //...)."""
    start = time.monotonic()
    root = find_workspace_root(Path(ctx.obj.workspace or ".").resolve())
    request = ["build", sorted(targets), config_tokens(kwargs["configs"]), str(ctx.obj.cache_root()),
               list(kwargs["sweeps"]), kwargs["executor"], kwargs["remote_download"]]
    recorded = noop.check(root, request)
    if recorded is not None:
        targets_count, output_root = recorded
        point_convenience_link(root, root / output_root)
        click.echo(summary_text(targets=targets_count, executed=0, up_to_date=targets_count, hits=0, remote=0,
                                failed=0, skipped=0, wall_s=time.monotonic() - start), err=True)
        return
    session, analyzed = _start(ctx, targets, kwargs)
    graph = _without_tests(analyzed.graph)
    builder, summary = _run_build(session, graph, kwargs, toplevel={request.node for request in analyzed.requests})
    if not summary.ok:
        sys.exit(EXIT_BUILD_FAILED)
    outputs = [stat[0] for label, target in graph.items() if target.action is not None
               for stat in builder.state.get(str(label)).stats]
    noop.record(root, request, analyzed, graph, outputs, builder.output_root.relative_to(root))


@cli.command()
@click.argument("target", shell_complete=complete_labels)
@build_options
@click.pass_context
def run(ctx, target, **kwargs):
    """Build TARGET, then run it in the foreground with its output streamed."""
    session, analyzed = _start(ctx, [target], kwargs)
    graph = analyzed.graph
    node = analyzed.requests[0].node
    configured = graph[node]
    action = configured.run_action
    if action is None:
        raise NothingToDoError(f"{node} has nothing to run",
                               hint="give a command target a 'run' attribute, or run a bench target")
    runnable = {label: t for label, t in graph.items() if label != node or not configured.is_test}
    builder, summary = _run_build(session, runnable, kwargs, toplevel={node})
    if not summary.ok:
        sys.exit(EXIT_BUILD_FAILED)
    click.echo(f"running {node} ...", err=True)
    sys.exit(builder.run_foreground(action))


@cli.command()
@click.argument("targets", nargs=-1, required=True, shell_complete=complete_labels)
@build_options
@sweep_option
@click.option("--no-cache-test-results", is_flag=True, help="Run tests even when a cached pass exists.")
@click.option("--results-json", metavar="FILE", help="Write the test results as JSON.")
@click.option("--junit-xml", metavar="FILE", help="Write the test results as JUnit XML (one testcase per target).")
@click.option("--report", metavar="FILE.html",
              help="Write a self-contained HTML page: the results table and throughput/latency plots.")
@click.pass_context
def test(ctx, targets, no_cache_test_results, results_json, junit_xml, report, **kwargs):
    """Build and run the test and benchmark targets among TARGETS."""
    session, analyzed = _start(ctx, targets, kwargs)
    graph = analyzed.graph
    requests = [request for request in analyzed.requests if graph[request.node].is_test]
    if not requests:
        raise NothingToDoError(f"no test or bench targets in {' '.join(targets)}")
    tests = {request.node for request in requests}
    builder, summary = _run_build(session, graph, kwargs, tests=tests, toplevel=tests,
                                  force=tests if no_cache_test_results else None)
    rows = test_rows(requests, summary)
    click.echo(format_table(rows))
    if results_json:
        Path(results_json).write_text(json.dumps(rows, indent=2) + "\n")
    if junit_xml:
        write_junit(rows, Path(junit_xml))
    if report:
        from ..report import write_report

        benches = {str(label): builder.output_root / label.package / label.name
                   for label in tests if graph[label].rule == "bench"}
        write_report(Path(report), rows, benches, f"mlbuild test {' '.join(targets)}")
        click.echo(f"report: {report}", err=True)
    if not summary.ok:
        sys.exit(EXIT_BUILD_FAILED)


def test_rows(requests, summary) -> list[dict]:
    """One row per (target, configuration); a sweep point that shares a test's node (it reads
    none of the swept groups) reports that one run."""
    rows = []
    for request in sorted(requests, key=lambda r: r.label):  # stable: the matrix order within a target
        outcome = summary.outcomes[request.node]
        result = outcome.result
        passed = outcome.status not in (Status.TEST_FAILED, Status.FAILED, Status.SKIPPED)
        verdict = ("PASSED" if passed else "NO STATUS" if outcome.status == Status.SKIPPED else "FAILED")
        row = {
            "target": str(request.label), "config": request.configuration.describe(),
            "config_name": request.configuration.name, "verdict": verdict,
            "cached": outcome.status.cached,
            "duration_s": result.duration_s if result else None,
        }
        if result is not None:
            row.update(result.report or {})
            if not passed and result.failure is not None:
                row["failure"] = result.failure
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    several = len({r["config_name"] for r in rows if "config_name" in r}) > 1
    columns = ["target", *(["config_name"] if several else []), "verdict", "scenario", "samples_per_second",
               "latency_p90_ms", "latency_p99_ms", "time_to_train_s", "epochs", "accuracy", "duration_s"]
    present = [c for c in columns if any(r.get(c) is not None for r in rows)]
    cells = [[_cell(r, c) for c in present] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(present)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(present, widths))]
    lines += ["  ".join(v.ljust(w) for v, w in zip(row, widths)) for row in cells]
    return "\n".join(lines)


def _cell(row: dict, column: str) -> str:
    value = row.get(column)
    if column == "verdict" and row.get("cached") and value == "PASSED":
        return "PASSED (cached)"
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else str(value)
