"""Where full-integer int8 BERT time goes on LiteRT, and what the integer trace form buys: one run, one teacher.

Rows (each exported, verified against Keras on the full dev set, then all timed back to back in round-robin passes,
then profiled per kernel with Linux perf through `tfbertopt.bench.profile`):

    baseline             float32 (the row every ratio is taken against)
    ptq-dynamic          dynamic-range int8 (int8 weights, float activations)
    ptq-int8-keras-ops   full-integer int8 traced with Keras' own ops (int8 SQUARED_DIFFERENCE LayerNorm variance,
                         negative-id wrap before each embedding gather): tfbertopt's int8 until this benchmark
    ptq-int8             full-integer int8 traced in the integer form (`trace_form="integer"`, the default now:
                         MUL-based LayerNorm variance and plain gathers, `tfbertopt.export.integer_tracing`)
    ptq-int8-matmul-one-scale  `export_litert(..., "int8-matmul", min_spread=None)`: int8 FULLY_CONNECTED and
                         embedding gathers with calibrated ranges, everything else float, one scale per tensor
    ptq-int8-matmul      the same with per-channel output scales on the matmuls whose output channels spread by
                         more than 8x (`tfbertopt.export.channel_equalization`; the FFN outputs)
    ptq-int8-float-attention  full integer with attention's BATCH_MATMULs and SOFTMAX left float (LiteRT has no
                         XNNPACK int8 kernel for an activation x activation BATCH_MATMUL; float has one), through
                         `MixedPrecision(..., trace_form="integer").quantize(denylisted_ops=...)`

Calibration: 100 training examples (a seeded sample), as `export_litert` does by default. Every export whose
softmax runs in float (float32, dynamic, int8-matmul) masks attention with an additive bias (`attention_masking=
"auto"`), not Keras' two SELECTs per layer.

    python benchmarks/sst2_int8_speed.py --teacher runs/sst2-minilm-baseline/00_finetune/model.keras
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfbertopt.bench import harness, profile  # noqa: E402
from tfbertopt.bench.harness import command_line  # noqa: E402
from tfbertopt.bench.retime import ROUND_ROBIN_NOTE, retime_round_robin, time_round_robin  # noqa: E402
from tfbertopt.data.glue import load_glue  # noqa: E402
from tfbertopt.data.pipeline import encode  # noqa: E402
from tfbertopt.saving import load_model  # noqa: E402

VARIANTS = [  # variant, tags, quantization, export options
    ("baseline", ["baseline", "teacher", "finetune"], "float32", {}),
    ("ptq-dynamic", ["ptq-dynamic"], "dynamic", {}),
    ("ptq-int8-keras-ops", ["ptq-int8"], "int8", {"trace_form": "keras"}),
    ("ptq-int8", ["ptq-int8"], "int8", {"trace_form": "integer"}),
    ("ptq-int8-matmul-one-scale", ["ptq-int8", "mixed-precision"], "int8-matmul", {"min_spread": None}),
    ("ptq-int8-matmul", ["ptq-int8", "mixed-precision", "equalized"], "int8-matmul", {"min_spread": 8.0}),
]


def log(message: str) -> None:
    print(f"[int8_speed {time.strftime('%H:%M:%S')}] {message}", flush=True)


def float_attention_row(teacher, train, dev, features, work) -> dict:
    """Full-integer int8 (integer trace form) with BATCH_MATMUL and SOFTMAX float: verified like the others."""
    from tfbertopt.export.litert import ExportResult, op_counts
    from tfbertopt.export.mixed_precision import MixedPrecision
    from tfbertopt.export.op_report import op_report
    from tfbertopt.export.verify import verify_litert
    from tfbertopt.kernels import count_params
    from tfbertopt.train import predict_logits

    variant, denylist = "ptq-int8-float-attention", ["BATCH_MATMUL", "SOFTMAX"]
    log(f"{variant}: int8 with {denylist} float, verify on {len(dev)} dev examples")
    mp = MixedPrecision(teacher, train, sequence_length=128, trace_form="integer")
    flatbuffer = mp.quantize(denylisted_ops=denylist)
    path = os.path.join(work, f"{variant}_int8.tflite")
    with open(path, "wb") as f:
        f.write(flatbuffer)
    result = ExportResult(path, "int8", len(flatbuffer), op_counts(flatbuffer), 128, mp.input_names,
                          op_report(path))
    report = verify_litert(path, teacher, dev, quantized=True, features=features,
                           keras_logits=predict_logits(teacher, features))
    log(f"{variant}: {report.summary()}")
    row = harness.litert_row(variant, ["ptq-int8", "mixed-precision"], "baseline", result, report, dev.task.name,
                             harness.model_macs(teacher, 128), count_params(teacher), None, None, None)
    row["dev_examples"] = len(dev)
    row["export_options"] = {"trace_form": "integer", "float_ops": denylist}
    return row


def retime(out: str, work: str, args) -> int:
    """--timing-only: re-times the files of an existing results file in place (scores and profiles kept)."""
    doc = retime_round_robin(out, work, command_line(), args.runs, args.passes, log=log)
    print(harness.markdown_table(doc["rows"]), flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="runs/sst2-minilm-baseline/00_finetune/model.keras")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--out", default=None, help="default benchmarks/results/<task>_int8_speed.json")
    parser.add_argument("--work", default=None, help="default runs/<task>-int8-speed")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--profile-seconds", type=float, default=4.0)
    parser.add_argument("--dev-examples", type=int, default=None)
    parser.add_argument("--timing-only", action="store_true",
                        help="re-time the files of an existing --out results file in place (scores, profiles kept)")
    args = parser.parse_args(argv)
    out = args.out or f"benchmarks/results/{args.task}_int8_speed.json"
    work = args.work or f"runs/{args.task}-int8-speed"
    started = time.time()
    if args.timing_only:
        return retime(out, work, args)

    teacher = load_model(args.teacher, compile=False)
    dev = load_glue(args.task, "dev", data_dir=args.data_dir)
    if args.dev_examples:
        dev = dev.take(args.dev_examples)
    train = load_glue(args.task, "train", data_dir=args.data_dir)
    features = encode(dev.texts, teacher.preprocessor)
    rows = []
    for variant, tags, quantization, options in VARIANTS:
        log(f"{variant}: export {quantization} {options} and verify on {len(dev)} dev examples")
        row = harness.measure_variant(teacher, variant, tags, None if variant == "baseline" else "baseline", dev,
                                      work, None, quantization=quantization, threads=(), features=features,
                                      calibration=train if quantization.startswith("int8") else None,
                                      export_options=options)
        row["export_options"] = options
        rows.append(row)
    rows.append(float_attention_row(teacher, train, dev, features, work))

    peak = time_round_robin(rows, work, args.runs, args.passes, log=log)
    can_profile = profile.perf_available()
    for row in rows:
        if not can_profile:
            row["profile"] = None
            continue
        path = os.path.join(work, f"{row['variant']}_{row['quantization']}.tflite")
        log(f"{row['variant']}: kernel profile ({args.profile_seconds:.0f} s of invocations, 2 threads)")
        result = profile.kernel_profile(path, num_threads=2, seconds=args.profile_seconds)
        row["profile"] = result.to_dict()
        print(result.table(), flush=True)

    extra = {"data": dev.source, "teacher": args.teacher, "timing": ROUND_ROBIN_NOTE.format(passes=args.passes),
             "profile_method": "Linux perf sampling (cpu-clock, 999 Hz) of back-to-back invocations, samples in "
                               "LiteRT's libraries grouped by kernel symbol (tfbertopt.bench.profile); profile.kinds "
                               "are shares of LiteRT's samples, kind_ms those shares of the profiled latency",
             "total_seconds": round(time.time() - started, 1)}
    doc = harness.write_results(out, f"{args.task}_int8_speed", command_line(), rows, peak, extra=extra)
    print(harness.markdown_table(doc["rows"]), flush=True)
    log(f"wrote {out} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
