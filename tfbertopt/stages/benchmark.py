"""The `benchmark` stage: times the exported files and writes the run's report."""

from __future__ import annotations

import os
from typing import ClassVar

from tfbertopt.bench import harness, latency, pareto
from tfbertopt.data.tasks import get_task
from tfbertopt.export.litert import ExportResult
from tfbertopt.export.verify import VerificationReport
from tfbertopt.kernels import count_params
from tfbertopt.stages.base import Stage, say
from tfbertopt.stages.export import VARIANT_TAGS


class BenchmarkStage(Stage):
    """Times the files the export stage wrote (and verified), beside the float32 baseline, in one run; writes
    report.json, report.md (with a table of the stages) and accuracy-vs-size/speed plots in the run folder."""

    name = "benchmark"
    options: ClassVar[dict] = {
        "results": (None, str, "also write the BENCHMARKS.md JSON here"),
        "latency_runs": (30, int, "timed LiteRT invocations per variant (median reported)"),
        "threads": ([2, 1], list, "LiteRT thread counts to time"),
    }
    counts = ("latency_runs",)

    def run(self, run, options: dict, stage_dir: str, train, dev, index: int) -> dict:
        task = get_task(run.recipe["task"])
        exports = [e for out in run.state["finished"].values() for e in out.get("exports", [])]
        # Stages that compress record their tags (distill, svd, sharing, ...); the exported model carries all of them.
        stage_tags = [t for out in run.state["finished"].values() for t in out.get("tags", [])]
        say("benchmark: measuring this machine's LiteRT int8 matmul peak")
        peak = latency.int8_peak_gmacs(num_threads=2)
        say(f"benchmark: int8 peak {peak:.0f} GMAC/s (2 threads)")
        params = count_params(run.model)
        base_variant = "float32" if any(e["quantization"] == "float32" for e in exports) else None
        rows = []
        for e in exports:
            q = e["quantization"]
            report = VerificationReport(**e["verification"])
            lat = {t: latency.litert_latency_ms(e["path"], num_threads=t, runs=options["latency_runs"])
                   for t in options["threads"]}
            result = ExportResult(e["path"], q, e["size_bytes"], e["ops"], e["sequence_length"], ())
            tags = VARIANT_TAGS[q] if base_variant else [t for t in VARIANT_TAGS[q] if t != "baseline"]
            if stage_tags:   # a compressed model, not the teacher (no baseline/teacher tags)
                tags = list(dict.fromkeys(stage_tags)) + [t for t in VARIANT_TAGS[q]
                                                          if t not in ("baseline", "teacher", "finetune")]
            row = harness.litert_row(q, tags, None if q == base_variant else base_variant, result, report, task.name,
                                     harness.model_macs(run.model, e["sequence_length"]), params, peak, lat.get(2),
                                     lat.get(1))
            if q == base_variant:
                row["keras_examples_per_s"] = round(harness.keras_throughput(run.model, e["sequence_length"]), 2)
            row["dev_examples"] = e["dev_examples"]
            if e.get("float_ops") is not None:    # full-integer exports: ops left in float
                row["float_ops"] = e["float_ops"]
            rows.append(row)
            say(f"benchmark: {q}: {row['tflite_mb']} MB, {row['latency_ms']} ms (2 threads)")
        command = harness.command_line()
        stages = stage_rows(run.state)
        extra = {"recipe": run.recipe.get("_path"), "data": dev.source, "stages": stages}
        doc = harness.write_results(os.path.join(run.write_dir, "report.json"), run.recipe["name"], command, rows, peak,
                                    extra=extra)
        with open(os.path.join(run.write_dir, "report.md"), "a") as f:
            f.write("\n## Stages\n\n" + stage_table(stages) + "\n")
        if options["results"]:
            harness.write_results(options["results"], run.recipe["name"], command, rows, peak, extra=extra)
        print(harness.markdown_table(doc["rows"]), flush=True)
        outputs = {"report": os.path.join(run.write_dir, "report.json"), "rows": rows}

        try:   # the plots are extras: report.json/.md above are the essential outputs
            points, _ = pareto.points_from_results(doc, run.recipe["name"])
            outputs["plots"] = [str(p) for p in pareto.plot_pareto(points, run.write_dir, task=task.name)]
            say(f"benchmark: plots {', '.join(outputs['plots'])}")
        except ImportError as e:
            say(f"benchmark: no accuracy-vs-size/latency plots: {e}")
        return outputs


def stage_rows(state: dict) -> list[dict]:
    """One row per finished training stage of a run's state: seconds, parameters (and the ratio to the recipe's
    starting model), and the last dev metric its training logged."""
    start = state.get("start_params")
    rows = []
    for key, out in state["finished"].items():
        if "params" not in out:
            continue
        history = out.get("history") or {}
        dev = {k: v[-1] for k, v in history.items() if k.startswith("dev_") and v}
        rows.append({"stage": key, "seconds": out.get("seconds"), "params": out["params"],
                     "x_fewer_params": round(start / out["params"], 2) if start else None, **dev})
    return rows


def stage_table(rows: list[dict]) -> str:
    """The stage rows as a markdown table (dev metrics as logged; '-' where a stage logged none)."""
    metrics = sorted({k for r in rows for k in r if k.startswith("dev_")})
    head = ["stage", "seconds", "params", "x fewer params"] + metrics
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        seconds = f"{r['seconds']:.0f}" if r.get("seconds") is not None else "-"
        cells = [r["stage"], seconds, f"{r['params'] / 1e6:.2f}M",
                 f"{r['x_fewer_params']:.2f}" if r.get("x_fewer_params") else "-"]
        cells += [f"{r[m]:.4f}" if isinstance(r.get(m), (int, float)) else "-" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)
