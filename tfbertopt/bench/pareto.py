"""Accuracy against size and against speed across benchmark results: the Pareto front, as PNG plots and markdown.

Each point is one row of a results file (format: docs/results.md), labelled `<file stem>/<variant>`.
What is plotted, and why:

- accuracy (y) is the dev score of the exported .tflite (`tflite_score`, ai-edge-litert on the task's full dev set),
  or the Keras score where the file was not scored (such points are marked `*`). Scores are absolute: every file
  evaluates the same dev set, so they compare across files.
- size (x of `accuracy_vs_size.png`) is the .tflite file in MB, absolute: a file's size does not depend on the
  machine or the run.
- speed (x of `accuracy_vs_latency.png`) is the speed-up over the row's *own* baseline row, in the same file:
  baseline latency / row latency (LiteRT, batch 1, 2 threads; 1 thread where a run timed only that, marked
  `[1 thread]`). Files were timed in different runs, so raw milliseconds do not compare across files; ratios measured
  in one run do, within a few percent of noise.

Rows without a dev score, or without both a size and a latency, are skipped and listed with the reason; a row with
only one of the two is left out of the other plot, and listed too.

Example (a results file written in a temporary folder):

>>> import json, pathlib, shutil, tempfile
>>> from tfbertopt.bench.pareto import load_points, markdown_front, pareto_front, plot_pareto
>>> rows = [
...     {"task": "sst2", "variant": "float32", "tags": ["baseline"], "baseline": None, "metric": "accuracy",
...      "tflite_score": 0.90, "tflite_mb": 90.0, "latency_ms": 17.0},
...     {"task": "sst2", "variant": "dynamic", "tags": ["ptq-dynamic"], "baseline": "float32",
...      "metric": "accuracy", "tflite_score": 0.89, "tflite_mb": 23.0, "latency_ms": 6.8},
...     {"task": "sst2", "variant": "gmp-90", "tags": ["gmp"], "baseline": "float32", "metric": "accuracy",
...      "tflite_score": 0.80, "tflite_mb": 90.0, "latency_ms": 17.0},
...     {"task": "sst2", "variant": "broken", "tags": [], "baseline": "float32", "metric": "accuracy",
...      "tflite_score": None, "keras_score": None, "tflite_mb": 1.0, "latency_ms": 1.0},
... ]
>>> tmp = pathlib.Path(tempfile.mkdtemp())
>>> _ = (tmp / "demo.json").write_text(json.dumps({"benchmark": "demo", "rows": rows}))
>>> points, skipped = load_points([tmp / "demo.json"])
>>> [p.label for p in points]
['demo/float32', 'demo/dynamic', 'demo/gmp-90']
>>> skipped
[('demo/broken', 'no dev score (tflite_score and keras_score are null)')]
>>> [p.label for p in pareto_front(points, "size_mb", "score")]
['demo/dynamic', 'demo/float32']
>>> [(p.label, p.speedup) for p in pareto_front(points, "speedup", "score", x_better="larger")]
[('demo/float32', 1.0), ('demo/dynamic', 2.5)]
>>> print(markdown_front(points, "size_mb", "score"))
| point | tags | accuracy | .tflite MB | x smaller | x faster | verified |
| --- | --- | --- | --- | --- | --- | --- |
| demo/dynamic | ptq-dynamic | 0.8900 | 23.0 | 3.91 | 2.50 | — |
| demo/float32 | baseline | 0.9000 | 90.0 | 1.00 | 1.00 | — |
>>> [p.name for p in plot_pareto(points, tmp)]
['accuracy_vs_size.png', 'accuracy_vs_latency.png']
>>> shutil.rmtree(tmp)

Command line: `python -m tfbertopt.bench.pareto benchmarks/results/*.json --out benchmarks/results/`
(or `tfbertopt report benchmarks/results/*.json --out DIR`).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import pathlib
import sys
from typing import Iterable, Sequence

SIZE_PNG = "accuracy_vs_size.png"
LATENCY_PNG = "accuracy_vs_latency.png"

TASK_NAMES = {"sst2": "SST-2", "mrpc": "MRPC", "stsb": "STS-B", "cola": "CoLA", "rte": "RTE", "qnli": "QNLI",
              "mnli": "MNLI", "qqp": "QQP"}


@dataclasses.dataclass(frozen=True)
class Point:
    """One results row, reduced to what the plots need."""

    label: str                    # "<file stem>/<variant>"
    source: str                   # file stem (or recipe name)
    variant: str
    task: str
    metric: str
    score: float                  # dev score of the .tflite, or of the Keras model when the file was not scored
    score_source: str             # "tflite" or "keras"
    size_mb: float | None         # .tflite size
    size_ratio: float | None      # own baseline MB / this MB
    latency_ms: float | None      # the latency the speed-up is computed from
    speedup: float | None         # own baseline latency / this latency (same file, same run, same threads)
    latency_threads: int | None   # 2 normally; 1 when the run timed only one thread
    tags: tuple = ()
    baseline: bool = False        # the baseline row of its file
    verified: bool | None = None  # the export verifier's verdict, when the row records it
    dev_examples: int | None = None


def _value(point, key):
    return point[key] if isinstance(point, dict) else getattr(point, key)


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _latency(row: dict) -> tuple[float | None, int | None]:
    if _finite(row.get("latency_ms")) and row["latency_ms"] > 0:
        return float(row["latency_ms"]), 2
    if _finite(row.get("latency_ms_1thread")) and row["latency_ms_1thread"] > 0:
        return float(row["latency_ms_1thread"]), 1
    return None, None


def points_from_results(doc: dict, source: str) -> tuple[list[Point], list[tuple[str, str]]]:
    """Points of one results object (a BENCHMARKS.md JSON) and the (label, reason) of every row left out of a plot.

    Ratios are computed against the row's own baseline in `doc` (the baseline row itself gets 1.0).
    """
    rows = doc.get("rows")
    if not isinstance(rows, list):
        return [], [(source, "no 'rows' list: not a results file")]
    by_variant = {r.get("variant"): r for r in rows if isinstance(r, dict)}
    points, skipped = [], []
    for row in rows:
        if not isinstance(row, dict):
            skipped.append((source, f"row is not an object: {row!r}"))
            continue
        variant = str(row.get("variant"))
        label = f"{source}/{variant}"
        if _finite(row.get("tflite_score")):
            score, score_source = float(row["tflite_score"]), "tflite"
        elif _finite(row.get("keras_score")):
            score, score_source = float(row["keras_score"]), "keras"
        else:
            skipped.append((label, "no dev score (tflite_score and keras_score are null)"))
            continue
        tags = tuple(row.get("tags") or ())
        is_baseline = row.get("baseline") is None and "baseline" in tags
        base = row if is_baseline else by_variant.get(row.get("baseline"))
        size = float(row["tflite_mb"]) if _finite(row.get("tflite_mb")) and row["tflite_mb"] > 0 else None
        latency, threads = _latency(row)
        size_ratio = speedup = None
        why_no_speed = "no latency_ms" if latency is None else None
        if base is None:
            why_no_speed = why_no_speed or f"its baseline {row.get('baseline')!r} is not a row of the same file"
        else:
            if size is not None and _finite(base.get("tflite_mb")) and base["tflite_mb"] > 0:
                size_ratio = base["tflite_mb"] / size
            if latency is not None:
                base_latency = base.get("latency_ms" if threads == 2 else "latency_ms_1thread")
                if _finite(base_latency) and base_latency > 0:
                    speedup = base_latency / latency
                else:
                    why_no_speed = f"its baseline {base.get('variant')!r} has no {threads}-thread latency"
        if size is None and speedup is None:
            skipped.append((label, f"no tflite_mb and no speed-up ({why_no_speed})"))
            continue
        if size is None:
            skipped.append((label, "no tflite_mb: left out of the size plot"))
        if speedup is None:
            skipped.append((label, f"{why_no_speed}: left out of the latency plot"))
        points.append(Point(
            label=label, source=source, variant=variant, task=str(row.get("task", "")),
            metric=str(row.get("metric") or "score"), score=score, score_source=score_source, size_mb=size,
            size_ratio=None if size_ratio is None else round(size_ratio, 4),
            latency_ms=latency, speedup=None if speedup is None else round(speedup, 4),
            latency_threads=threads if speedup is not None else None, tags=tags, baseline=is_baseline,
            verified=row.get("verified"), dev_examples=row.get("dev_examples")))
    return points, skipped


def load_points(paths: Iterable) -> tuple[list[Point], list[tuple[str, str]]]:
    """Points of every row of the given results files, and the (label, reason) of every row or file left out."""
    points, skipped = [], []
    for path in paths:
        path = pathlib.Path(path)
        try:
            doc = json.loads(path.read_text())
        except (OSError, ValueError) as e:
            skipped.append((str(path), f"cannot read: {e}"))
            continue
        if not isinstance(doc, dict):
            skipped.append((path.stem, "not a JSON object: not a results file"))
            continue
        p, s = points_from_results(doc, path.stem)
        points += p
        skipped += s
    return points, skipped


def pareto_front(points: Sequence, x_key: str, y_key: str, *, x_better: str = "smaller") -> list:
    """The points no other point dominates, sorted by x ascending (ties keep their input order).

    y: larger is better. x: smaller is better (`x_better="smaller"`, e.g. MB) or larger (`"larger"`, e.g. speed-up).
    A point is dominated when another is at least as good on both axes and strictly better on one, so points with
    identical coordinates are all on the front together. Points (objects or dicts) whose x or y is None are ignored.
    """
    if x_better not in ("smaller", "larger"):
        raise ValueError(f"x_better must be 'smaller' or 'larger', not {x_better!r}")
    sign = 1 if x_better == "smaller" else -1
    pts = [p for p in points if _value(p, x_key) is not None and _value(p, y_key) is not None]
    coords = [(sign * _value(p, x_key), _value(p, y_key)) for p in pts]   # minimise the first, maximise the second
    front = []
    for i, (x, y) in enumerate(coords):
        dominated = any(qx <= x and qy >= y and (qx < x or qy > y) for qx, qy in coords)
        if not dominated:
            front.append(i)
    front.sort(key=lambda i: (_value(pts[i], x_key), i))
    return [pts[i] for i in front]


def _fmt(value, spec: str) -> str:
    return "—" if value is None else format(value, spec)


def _verified(point: Point) -> str:
    return "—" if point.verified is None else ("yes" if point.verified else "**failed**")


def markdown_front(points: Sequence[Point], x_key: str = "size_mb", y_key: str = "score", *,
                   x_better: str = "smaller") -> str:
    """A markdown table of the front of `points` (see `pareto_front`), in x order."""
    lines = ["| point | tags | accuracy | .tflite MB | x smaller | x faster | verified |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for p in pareto_front(points, x_key, y_key, x_better=x_better):
        score = _fmt(p.score, ".4f") + (" (Keras)" if p.score_source == "keras" else "")
        speed = _fmt(p.speedup, ".2f") + (" (1 thread)" if p.latency_threads == 1 else "")
        lines.append(f"| {p.label} | {', '.join(p.tags) or '—'} | {score} | {_fmt(p.size_mb, '.1f')} | "
                     f"{_fmt(p.size_ratio, '.2f')} | {speed} | {_verified(p)} |")
    return "\n".join(lines)


def _display_label(p: Point) -> str:
    text = p.label + ("*" if p.score_source == "keras" else "")
    if p.verified is False:
        text += " (verify failed)"
    return text


def _groups(points: Sequence[Point], x_key: str) -> list[list[Point]]:
    """Points with the same coordinates, grouped (their labels are drawn once)."""
    groups: dict = {}
    for p in points:
        groups.setdefault((round(_value(p, x_key), 6), round(p.score, 6)), []).append(p)
    return list(groups.values())


def _group_label(group: list[Point]) -> str:
    text = _display_label(group[0])
    return text if len(group) == 1 else f"{text} (and {len(group) - 1} identical rows)"


def _overlap(a, b) -> float:
    """Overlap area of two (x0, y0, x1, y1) boxes."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _place_labels(fig, ax, items, obstacles) -> None:
    """Annotates each (x, y, text, color) with a label box that overlaps no marker, no earlier label and no
    obstacle box, inside the axes: the nearest free spot among 8 directions at growing distances (greedy, in the
    order given), with a leader line when it is not right beside its point. All in display pixels, one draw."""
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    taken = list(obstacles)
    directions = [(1, 1), (-1, 1), (1, -1), (-1, -1), (1, 0), (-1, 0), (0, 1), (0, -1)]
    for x, y, text, color in items:
        px, py = ax.transData.transform((x, y))
        probe = ax.text(0, 0, text, fontsize=9)
        ext = probe.get_window_extent(renderer)
        probe.remove()
        w, h = ext.width + 6, ext.height + 4
        best = None
        for distance in (8, 20, 36, 56, 80, 110, 150, 200, 260):
            for ux, uy in directions:
                x0 = px + ux * distance - (w if ux < 0 else (w / 2 if ux == 0 else 0))
                y0 = py + uy * distance - (h if uy < 0 else (h / 2 if uy == 0 else 0))
                box = (x0, y0, x0 + w, y0 + h)
                inside = (box[0] >= frame.x0 + 2 and box[2] <= frame.x1 - 2 and box[1] >= frame.y0 + 2
                          and box[3] <= frame.y1 - 2)
                cost = sum(_overlap(box, t) for t in taken) + (0 if inside else 1e9) + distance
                if best is None or cost < best[0]:
                    best = (cost, box, distance)
            if best[0] < 1e9 and best[0] == best[2]:   # a free spot at this distance
                break
        _, box, distance = best
        taken.append(box)
        ax.annotate(text, (x, y), xytext=(box[0] + 3 - px, box[1] + 2 - py), textcoords="offset pixels",
                    ha="left", va="bottom", fontsize=9, color=color, zorder=6,
                    bbox=dict(boxstyle="square,pad=0.1", fc="white", ec="none", alpha=0.85),
                    arrowprops=None if distance <= 8 else dict(arrowstyle="-", color="0.45", lw=0.6, shrinkA=0,
                                                               shrinkB=4))


def _plot_one(plt, points: Sequence[Point], path: pathlib.Path, x_key: str, x_better: str, title: str,
              xlabel: str, caption: str, log_x: bool) -> None:
    fig, ax = plt.subplots(figsize=(12, 7.5), dpi=110)
    pts = [p for p in points if _value(p, x_key) is not None]
    front = pareto_front(pts, x_key, "score", x_better=x_better)
    front_ids = {id(p) for p in front}
    others = [p for p in pts if id(p) not in front_ids and not p.baseline]
    baselines = [p for p in pts if p.baseline and id(p) not in front_ids]

    def scatter(group, **kw):
        solid = [p for p in group if p.verified is not False]
        hollow = [p for p in group if p.verified is False]
        for sel, face in ((solid, None), (hollow, "none")):
            if sel:
                style = dict(kw)
                if face:
                    style["facecolors"] = "none"
                    style["edgecolors"] = kw.get("color", "grey")
                    style.pop("color", None)
                    style.pop("label", None)
                ax.scatter([_value(p, x_key) for p in sel], [p.score for p in sel], **style)

    scatter(others, color="0.6", s=28, zorder=2, label="other rows")
    scatter(baselines, color="black", marker="*", s=200, zorder=4, label="baseline row of its file (teacher)")
    if front:
        xs, ys = [_value(p, x_key) for p in front], [p.score for p in front]
        ax.step(xs, ys, where="post" if x_better == "smaller" else "pre", color="tab:blue", lw=1.8, zorder=3,
                label="Pareto front")
        front_base = [p for p in front if p.baseline]
        scatter([p for p in front if not p.baseline], color="tab:blue", s=60, zorder=5)
        scatter(front_base, color="tab:blue", marker="*", s=240, zorder=5, edgecolors="black", linewidths=0.8)
    if not pts:
        ax.text(0.5, 0.5, "no points with this measurement", ha="center", va="center", transform=ax.transAxes)
    if log_x and pts:
        ax.set_xscale("log")
        from matplotlib.ticker import FuncFormatter, LogLocator

        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}x"))
        ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
    ax.set_xlabel(xlabel, fontsize=11)
    metric = sorted({p.metric for p in pts}) or ["score"]
    ax.set_ylabel(f"dev {' / '.join(metric)} of the .tflite (higher is better)", fontsize=11)
    ax.set_title(title, fontsize=13)
    ax.grid(True, which="major", alpha=0.3)
    if pts:
        xs_all = [_value(p, x_key) for p in pts]
        if log_x:
            ax.set_xlim(min(xs_all) / 1.4, max(xs_all) * 1.6)
        else:
            span = max(xs_all) - min(xs_all) or 1.0
            ax.set_xlim(max(0.0, min(xs_all) - 0.08 * span), max(xs_all) + 0.08 * span)
        ys_all = [p.score for p in pts]
        yspan = max(ys_all) - min(ys_all) or 0.05
        ax.set_ylim(min(ys_all) - 0.06 * yspan, max(ys_all) + 0.12 * yspan)

    handles, labels = ax.get_legend_handles_labels()
    if any(p.verified is False for p in pts):
        from matplotlib.lines import Line2D

        handles.append(Line2D([], [], marker="o", ls="", mfc="none", mec="0.4", ms=7))
        labels.append("hollow: failed the export verifier")
    legend = ax.legend(handles, labels, loc="best", fontsize=9, framealpha=0.9) if handles else None
    fig.text(0.01, 0.01, caption, fontsize=8.5, va="bottom", ha="left", wrap=True, color="0.2")
    fig.tight_layout(rect=(0, 0.09, 1, 1))

    # Labels: every front point and the baseline(s); coincident points share one label; the other rows' markers,
    # the legend and earlier labels are kept clear.
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    obstacles = []
    for p in pts:
        mx, my = ax.transData.transform((_value(p, x_key), p.score))
        r = 9 if p.baseline else 5
        obstacles.append((mx - r, my - r, mx + r, my + r))
    if legend is not None:
        e = legend.get_window_extent(renderer)
        obstacles.append((e.x0, e.y0, e.x1, e.y1))
    labelled = _groups(front, x_key) + _groups(baselines, x_key)
    labelled.sort(key=lambda g: (not g[0].baseline, -g[0].score))
    _place_labels(fig, ax, [(_value(g[0], x_key), g[0].score, _group_label(g),
                             "black" if id(g[0]) not in front_ids else "tab:blue") for g in labelled], obstacles)
    fig.savefig(path)
    plt.close(fig)


def _caption_common(points: Sequence[Point]) -> str:
    sources = sorted({p.source for p in points})
    n_dev = sorted({p.dev_examples for p in points if p.dev_examples})
    dev = f" ({n_dev[0]} examples)" if len(n_dev) == 1 else ""
    keras = " Scores marked * are the Keras model's (the file was not scored)." if any(
        p.score_source == "keras" for p in points) else ""
    return (f"Each point is one row <file>/<variant> of {len(sources)} results file(s): "
            f"{', '.join(sources)}. Accuracy: the exported .tflite on the dev set{dev}, absolute.{keras}")


def plot_pareto(points: Sequence[Point], out_dir, task: str | None = "sst2") -> list[pathlib.Path]:
    """Writes `accuracy_vs_size.png` and `accuracy_vs_latency.png` into `out_dir`; returns their paths.

    Only points of `task` are drawn (all points with `task=None`). Needs matplotlib (Agg backend; imported here so
    that the rest of tfbertopt works without it: ImportError with the install command otherwise).
    """
    try:
        import matplotlib
    except ImportError as e:
        raise ImportError("matplotlib is not installed (pip install 'matplotlib>=3.7')") from e
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    pts = [p for p in points if task is None or p.task == task]
    name = TASK_NAMES.get(task, task) if task else "all tasks"
    common = _caption_common(pts)
    size_path, latency_path = out / SIZE_PNG, out / LATENCY_PNG
    _plot_one(plt, pts, size_path, "size_mb", "smaller", f"{name}: accuracy vs .tflite size (Pareto front in blue)",
              ".tflite file size, MB (absolute; smaller is better)",
              common + " Size: the .tflite file on disk.", log_x=False)
    one_thread = any(p.latency_threads == 1 for p in pts if p.speedup is not None)
    threads = "2 threads" + ("; 1 thread where a run timed only that" if one_thread else "")
    _plot_one(plt, pts, latency_path, "speedup", "larger",
              f"{name}: accuracy vs speed-up over each file's own baseline (Pareto front in blue)",
              "speed-up = own baseline's latency / this latency (log scale; larger is better)",
              common + f" Speed-up: LiteRT batch 1, {threads}, median, against the baseline row timed in the same "
              "run (files were timed in different runs, so milliseconds are not compared across files; "
              "differences of a few % are noise).", log_x=True)
    return [size_path, latency_path]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfbertopt.bench.pareto", description=__doc__.split("\n\n")[0])
    parser.add_argument("results", nargs="+", help="results JSON files (BENCHMARKS.md format)")
    parser.add_argument("--out", default=".", help="folder for the PNGs (default: current folder)")
    parser.add_argument("--task", default="sst2", help="GLUE task to plot (default sst2; 'all' for every row)")
    args = parser.parse_args(argv)
    task = None if args.task == "all" else args.task
    print(f"[pareto] reading {len(args.results)} results file(s)", flush=True)
    points, skipped = load_points(args.results)
    print(f"[pareto] {len(points)} points; {len(skipped)} row(s) left out of a plot:", flush=True)
    for label, reason in skipped:
        print(f"[pareto]   {label}: {reason}", flush=True)
    if task is not None and not any(p.task == task for p in points):
        print(f"[pareto] error: no points for task {task!r}", file=sys.stderr)
        return 2
    print(f"[pareto] plotting into {os.path.abspath(args.out)}", flush=True)
    for path in plot_pareto(points, args.out, task=task):
        print(f"[pareto] wrote {path}", flush=True)
    pts = [p for p in points if task is None or p.task == task]
    print("\nFront, accuracy vs size:\n\n" + markdown_front(pts, "size_mb", "score"))
    print("\nFront, accuracy vs speed-up:\n\n" + markdown_front(pts, "speedup", "score", x_better="larger"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
