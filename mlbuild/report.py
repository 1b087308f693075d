"""`mlbuild test --report FILE.html`: one self-contained page of a test run's benchmark results.

The page holds the results table (the rows `mlbuild test` prints, with run style and
submission validity) and three plots drawn by matplotlib as inline SVG, so the file opens
anywhere with nothing to fetch:
- throughput per configuration: samples/s of each bench (LoadGen's summary);
- latency percentiles per scenario: p50 ... p99.9 of each bench (LoadGen's detail log);
- latency histograms: from the detail log's percentile ladder (min, p50, p90, p95, p97, p99,
  p99.9, max), each bin holding the share of queries between two consecutive points, drawn as a
  density so that bins of different widths compare. LoadGen logs no per-query latencies; its
  percentiles are what a histogram from its log can honestly show.

matplotlib is imported only when a report is asked for (it costs ~0.5 s).
"""

from __future__ import annotations

import html
import io
import json
from pathlib import Path

from .errors import UserError
from .rules.support.mlperf_logs import LogError, read_detail

PERCENTILES = (("p50", "50.00"), ("p90", "90.00"), ("p95", "95.00"), ("p97", "97.00"), ("p99", "99.00"),
               ("p99.9", "99.90"))
COLUMNS = ("target", "config", "verdict", "scenario", "run_style", "samples_per_second", "latency_p90_ms",
           "latency_p99_ms", "accuracy", "duration_s")


def latency_ladder(detail_path: Path) -> list[tuple[float, float]] | None:
    """(quantile 0..1, latency ns) from min to max, or None when the log has no latency results."""
    try:
        values, _ = read_detail(str(detail_path))
    except LogError:
        return None
    points = [(0.0, values.get("result_min_latency_ns"))]
    points += [(float(pct) / 100, values.get(f"result_{pct}_percentile_latency_ns")) for _, pct in PERCENTILES]
    points.append((1.0, values.get("result_max_latency_ns")))
    if any(v is None for _, v in points):
        return None
    return [(q, float(v)) for q, v in points]


def run_style(bench_dir: Path) -> dict:
    """run_style and valid_for_submission from the harness's settings.json, where there is one."""
    try:
        settings = json.loads((bench_dir / "performance" / "settings.json").read_text())
    except (OSError, ValueError):
        return {}
    return {"run_style": settings.get("run_style"), "valid_for_submission": settings.get("valid_for_submission")}


def write_report(path: Path, rows: list[dict], bench_dirs: dict[str, Path], title: str) -> None:
    """Write the page: `rows` as `mlbuild test` made them, `bench_dirs` bench target -> its output dir."""
    try:
        import matplotlib
    except ImportError:
        raise UserError("--report needs matplotlib, which is not installed",
                        hint="pip install 'mlbuild[report]' (or scripts/setup.sh)") from None

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    rows = [{**row, **run_style(bench_dirs[row["target"]])} if row["target"] in bench_dirs else row for row in rows]
    ladders = {target: ladder for target, directory in bench_dirs.items()
               if (ladder := latency_ladder(directory / "performance" / "mlperf_log_detail.txt")) is not None}
    figures = [
        ("throughput", "Throughput per configuration", _throughput(plt, rows)),
        ("percentiles", "Latency percentiles per scenario", _percentiles(plt, rows, ladders)),
        ("histogram", "Latency histograms (from the detail log's percentiles)", _histograms(plt, rows, ladders)),
    ]
    sections = [f'<section class="plot" id="{key}"><h2>{html.escape(name)}</h2>{svg}</section>'
                for key, name, svg in figures if svg]
    path.write_text(_PAGE.format(title=html.escape(title), table=_table(rows), plots="\n".join(sections)),
                    encoding="utf-8")


def _label(row: dict, rows: list[dict]) -> str:
    """The target, and its configuration where the rows were built in several."""
    several = len({r.get("config") for r in rows}) > 1
    return f"{row['target']} [{row.get('config')}]" if several else row["target"]


def _svg(plt, fig) -> str:
    buffer = io.StringIO()
    fig.tight_layout()
    fig.savefig(buffer, format="svg")
    plt.close(fig)
    text = buffer.getvalue()
    return text[text.index("<svg"):]  # drop the XML prolog: the SVG sits inside HTML


def _throughput(plt, rows: list[dict]) -> str:
    measured = [r for r in rows if r.get("samples_per_second")]
    if not measured:
        return ""
    fig, ax = plt.subplots(figsize=(9, 0.5 * len(measured) + 1.5))
    ax.barh([_label(r, rows) for r in measured], [r["samples_per_second"] for r in measured], color="#1f77b4")
    ax.set_xscale("log")
    ax.set_xlabel("samples/s (LoadGen)")
    ax.invert_yaxis()
    return _svg(plt, fig)


def _percentiles(plt, rows: list[dict], ladders: dict) -> str:
    benches = [r for r in rows if r["target"] in ladders]
    if not benches:
        return ""
    fig, ax = plt.subplots(figsize=(9, 4.5))
    for row in benches:
        ladder = ladders[row["target"]][1:-1]
        ax.plot([name for name, _ in PERCENTILES], [v / 1e6 for _, v in ladder], marker="o",
                label=f"{row.get('scenario')}: {_label(row, rows)}")
    ax.set_yscale("log")
    ax.set_ylabel("latency (ms)")
    ax.legend(fontsize="small", loc="upper left")
    return _svg(plt, fig)


def _histograms(plt, rows: list[dict], ladders: dict) -> str:
    benches = [r for r in rows if r["target"] in ladders]
    if not benches:
        return ""
    fig, axes = plt.subplots(len(benches), 1, figsize=(9, 2.6 * len(benches)), squeeze=False)
    for ax, row in zip(axes[:, 0], benches):
        ladder = ladders[row["target"]]
        edges = [v / 1e6 for _, v in ladder]
        shares = [b[0] - a[0] for a, b in zip(ladder, ladder[1:])]
        widths = [max(b - a, 1e-9) for a, b in zip(edges, edges[1:])]
        ax.bar(edges[:-1], [s / w for s, w in zip(shares, widths)], width=widths, align="edge", color="#ff7f0e",
               edgecolor="#8c4a00")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{row.get('scenario')}: {_label(row, rows)}", fontsize="medium")
        ax.set_xlabel("latency (ms)")
        ax.set_ylabel("share of queries per ms")
    return _svg(plt, fig)


def _table(rows: list[dict]) -> str:
    configs = {r.get("config") for r in rows}
    shared = configs.pop() if len(configs) == 1 else None
    present = [c for c in (*COLUMNS, "valid_for_submission") if any(r.get(c) is not None for r in rows)
               and not (c == "config" and shared is not None)]
    head = "".join(f"<th>{html.escape(c)}</th>" for c in present)
    body = []
    for row in rows:
        cells = []
        for column in present:
            value = row.get(column)
            text = f"{value:.4g}" if isinstance(value, float) else "" if value is None else str(value)
            css = f' class="{text.split()[0].lower()}"' if column == "verdict" and text else ""
            cells.append(f"<td{css}>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    caption = f"<caption>configuration: {html.escape(shared)}</caption>" if shared else ""
    return f"<table>{caption}<thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin-bottom: 2em; }}
th, td {{ border: 1px solid #ccc; padding: 4px 8px; text-align: left; font-size: 0.9em; }}
th {{ background: #f0f0f0; }}
caption {{ caption-side: bottom; text-align: left; font-size: 0.8em; color: #555; padding-top: 4px; }}
td.passed {{ color: #1a7f37; font-weight: bold; }}
td.failed {{ color: #c62828; font-weight: bold; }}
section.plot svg {{ max-width: 100%; height: auto; }}
</style></head>
<body>
<h1>{title}</h1>
{table}
{plots}
</body></html>
"""
