"""The benchmark harness every compression feature is judged by.

For each model variant, in one run and beside its baseline: parameters, file size, dev metric from Keras and from
the .tflite (ai-edge-litert), LiteRT latency at batch 1 with 2 and 1 threads, MACs per sequence and the share of
this machine's int8 matmul peak that latency implies, and Keras throughput. Rows follow the results format in
docs/results.md.

Example:

>>> from tfbertopt.bench.harness import markdown_table
>>> print(markdown_table([{"variant": "teacher", "task": "sst2", "keras_score": 0.9, "tflite_mb": 90.4,
...                        "latency_ms": 34.7, "baseline": None}]).splitlines()[0])
| variant | task | params | MB | keras | tflite | agree | ms (2t) | ms (1t) | GMACs | peak % | x smaller | x faster |
"""

from __future__ import annotations

import datetime
import json
import logging
import os
import platform
import shlex
import sys
import time

import keras
import numpy as np

from tfbertopt.bench import latency
from tfbertopt.data.pipeline import encode, model_input_names, without_preprocessor
from tfbertopt.distillation.word_students import is_word_student, student_macs
from tfbertopt.export.litert import export_litert
from tfbertopt.export.verified import versions
from tfbertopt.export.verify import verify_litert
from tfbertopt.kernels import count_macs, count_params
from tfbertopt.train import finetune, predict_logits


logger = logging.getLogger(__name__)


def command_line() -> str:
    """The command that started this process, as a user would type it (results files record it)."""
    args = " ".join(shlex.quote(a) for a in sys.argv[1:])
    return f"tfbertopt {args}" if os.path.basename(sys.argv[0]) == "tfbertopt" else \
        " ".join(shlex.quote(a) for a in sys.argv)


def machine_description() -> str:
    cpu = platform.processor() or "unknown cpu"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{os.cpu_count()} cores, {cpu}"


def keras_throughput(model, sequence_length: int = 128, batch_size: int = 32, batches: int = 3) -> float:
    """Examples per second of the Keras model's forward pass at full `sequence_length` (after one warm-up)."""
    with without_preprocessor(model):
        names = model_input_names(model)
        x = {n: np.ones((batch_size, sequence_length), np.int32) if n == "padding_mask"
             else np.zeros((batch_size, sequence_length), np.int32) for n in names}
        x["token_ids"][:] = 1
        model.predict_on_batch(x)
        start = time.perf_counter()
        for _ in range(batches):
            model.predict_on_batch(x)
    return batch_size * batches / (time.perf_counter() - start)


def ratio_columns(rows: list[dict]) -> None:
    """Adds `size_ratio` (baseline MB / row MB) and `speedup` (baseline ms / row ms) in place."""
    by_variant = {r["variant"]: r for r in rows}
    for row in rows:
        base = by_variant.get(row.get("baseline"))
        if base is None:
            continue
        if row.get("tflite_mb") and base.get("tflite_mb"):
            row["size_ratio"] = round(base["tflite_mb"] / row["tflite_mb"], 3)
        if row.get("latency_ms") and base.get("latency_ms"):
            row["speedup"] = round(base["latency_ms"] / row["latency_ms"], 3)


def _fmt(value, spec):
    return "—" if value is None else format(value, spec)


def markdown_table(rows: list[dict]) -> str:
    head = ("| variant | task | params | MB | keras | tflite | agree | ms (2t) | ms (1t) | GMACs | peak % "
            "| x smaller | x faster |")
    lines = [head, "|" + "---|" * 13]
    for r in rows:
        lines.append("| " + " | ".join([
            r["variant"], r.get("task", ""),
            _fmt(r.get("params") and r["params"] / 1e6, ".2f") + ("M" if r.get("params") else ""),
            _fmt(r.get("tflite_mb"), ".1f"), _fmt(r.get("keras_score"), ".4f"), _fmt(r.get("tflite_score"), ".4f"),
            _fmt(r.get("label_agreement"), ".4f"), _fmt(r.get("latency_ms"), ".2f"),
            _fmt(r.get("latency_ms_1thread"), ".2f"), _fmt(r.get("macs") and r["macs"] / 1e9, ".3f"),
            _fmt(r.get("peak_share") and 100 * r["peak_share"], ".1f"),
            _fmt(r.get("size_ratio"), ".2f"), _fmt(r.get("speedup"), ".2f"),
        ]) + " |")
    return "\n".join(lines)


HEADER = ("benchmark", "date", "machine", "command", "int8_peak_gmacs", "versions", "rows")


def rewrite_results(path, doc: dict, int8_peak_gmacs: float | None = None, **fields) -> dict:
    """Writes a results document read back from `path` (its rows edited in place) again: the run's command and every
    field beyond the header are kept, `fields` are set (e.g. `retimed=...`), the date, machine and versions are
    today's; the int8 peak is the document's unless given."""
    extra = {k: v for k, v in doc.items() if k not in HEADER}
    extra.update(fields)
    peak = doc["int8_peak_gmacs"] if int8_peak_gmacs is None else int8_peak_gmacs
    return write_results(path, doc["benchmark"], doc["command"], doc["rows"], peak, extra=extra)


def step_seconds(load, train, steps: int, learning_rate: float, verbose: int = 0, log=print) -> dict:
    """Median seconds per training step of `load("plain")` and `load("qat")` (the same model, plain and
    quantization-aware), `steps` steps each on the same batches of 32, back to back (the first 20 skipped as
    tracing); with their ratio `qat_over_plain`."""
    seconds = {}
    for kind in ("plain", "qat"):
        model = load(kind)
        timer = StepTimer()
        finetune(model, train.take(32 * (steps + 5)), None, epochs=1, batch_size=32, learning_rate=learning_rate,
                 max_steps=steps, callbacks=[timer], verbose=verbose, length_grouping=1)
        seconds[kind] = round(timer.median, 4)
        log(f"{kind}: {seconds[kind]} s/step")
        del model
    seconds["qat_over_plain"] = round(seconds["qat"] / seconds["plain"], 3)
    return seconds


def write_results(path, benchmark: str, command: str, rows: list[dict], int8_peak_gmacs: float | None,
                  extra: dict | None = None) -> dict:
    """Writes the BENCHMARKS.md JSON (and a .md table beside it); returns the object written."""
    ratio_columns(rows)
    doc = {
        "benchmark": benchmark,
        "date": datetime.date.today().isoformat(),
        "machine": machine_description(),
        "command": command,
        "int8_peak_gmacs": None if int8_peak_gmacs is None else round(int8_peak_gmacs, 1),
        "versions": versions(),
        "rows": rows,
    }
    doc.update(extra or {})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    with open(os.path.splitext(str(path))[0] + ".md", "w") as f:
        f.write(f"# {benchmark}\n\n`{command}`\n\n{doc['machine']}, {doc['date']}, int8 peak "
                f"{doc['int8_peak_gmacs']} GMAC/s\n\n{markdown_table(rows)}\n")
    return doc


def gzip_mb(path) -> float:
    """Size after gzip: what sparsity buys on disk and over the network (LiteRT stores dense kernels)."""
    import gzip

    with open(path, "rb") as f:
        return len(gzip.compress(f.read(), compresslevel=6)) / 1e6


def litert_row(variant: str, tags: list[str], baseline: str, export_result, report, task_name: str, macs: int,
               params: int, peak_gmacs: float | None, latency_2t: float | None, latency_1t: float | None) -> dict:
    """One BENCHMARKS.md row for an exported .tflite (verification report and latencies already measured)."""
    row = {
        "task": task_name,
        "variant": variant,
        "tags": list(tags),
        "baseline": baseline,
        "metric": report.metric,
        "keras_score": round(report.keras_score, 4),
        "tflite_score": round(report.tflite_score, 4),
        "label_agreement": round(report.label_agreement, 4),
        "max_logit_diff": float(f"{report.max_logit_diff:.3g}"),
        "verified": report.passed,
        "params": int(params),
        "tflite_mb": round(export_result.size_mb, 2),
        "gzip_mb": round(gzip_mb(export_result.path), 2),
        "latency_ms": None if latency_2t is None else round(latency_2t, 3),
        "latency_ms_1thread": None if latency_1t is None else round(latency_1t, 3),
        "macs": int(macs),
        "quantization": export_result.quantization,
    }
    if getattr(export_result, "op_report", None) is not None:
        row["float_ops"] = int(export_result.float_op_count)
    if latency_2t and peak_gmacs:
        row["peak_share"] = round(macs / (latency_2t / 1e3) / (peak_gmacs * 1e9), 4)
    return row


def model_macs(model, sequence_length: int = 128) -> int:
    """MACs of one sequence for any classifier tfbertopt exports: keras-hub transformers (`kernels.count_macs`)
    and the BiLSTM/CNN word-level students (`word_students.student_macs`)."""
    return student_macs(model, sequence_length) if is_word_student(model) else count_macs(model, sequence_length)


def measure_variant(model, variant: str, tags: list[str], baseline: str | None, dev, out_dir, peak_gmacs=None,
                    quantization: str = "float32", sequence_length: int = 128, threads=(2, 1), runs: int = 30,
                    features: dict | None = None, extra: dict | None = None, min_agreement: float = 0.995,
                    max_logit_diff: float = 1e-4, calibration=None, export_options: dict | None = None) -> dict:
    """Exports `model` to LiteRT, verifies it on `dev` and times it: one BENCHMARKS.md row.

    `calibration` (and `export_options`, e.g. `attention_masking`) go to `export_litert` (full-integer exports).

    The row records the verification verdict (`verified`); a failed verification is reported, not hidden.
    """
    features = features if features is not None else encode(dev.texts, model.preprocessor)
    keras_logits = predict_logits(model, features)
    result = export_litert(model, os.path.join(str(out_dir), f"{variant}_{quantization}.tflite"), quantization,
                           sequence_length, calibration=calibration, **(export_options or {}))
    report = verify_litert(result.path, model, dev, quantized=quantization != "float32", features=features,
                           keras_logits=keras_logits, min_agreement=min_agreement, max_logit_diff=max_logit_diff)
    lat = {t: latency.litert_latency_ms(result.path, num_threads=t, runs=runs) for t in threads}
    row = litert_row(variant, tags, baseline, result, report, dev.task.name, model_macs(model, sequence_length),
                     count_params(model), peak_gmacs, lat.get(2), lat.get(1))
    row["dev_examples"] = len(dev)
    row.update(extra or {})
    logger.info("%s: %s", variant, report.summary())
    print(f"[bench] {variant}: {report.summary()} | {row['tflite_mb']} MB, {row['latency_ms']} ms", flush=True)
    return row


class StepTimer(keras.callbacks.Callback):
    """Median seconds per training step, skipping the first `skip` (tracing) steps: the `train_step_ratio` of
    benchmark rows."""

    def __init__(self, skip: int = 20):
        super().__init__()
        self.skip, self.times = skip, []

    def on_train_batch_begin(self, batch, logs=None):
        self.start = time.perf_counter()

    def on_train_batch_end(self, batch, logs=None):
        if batch >= self.skip:
            self.times.append(time.perf_counter() - self.start)

    @property
    def median(self) -> float:
        return float(np.median(self.times)) if self.times else float("nan")
