"""Quantization-aware training for the int8-matmul graph, beside its post-training form: one run, one teacher.

`QuantizationConfig.for_export("int8-matmul")` fake-quantizes exactly what `export_litert(..., "int8-matmul")` runs in
int8: the input, per-channel weights and output of every projection, with per-channel output scales on the
projections whose output channels spread by more than 8x (measured on the calibration set, as the post-training
export decides). Everything else (attention, softmax, GELU, LayerNorm, residual sums) trains and runs in float. The
export takes its ranges from training: the calibration set only ranges the embedding lookups and the logits.

Rows (each exported, verified against its own Keras model on the full dev set, then timed back to back in
round-robin passes):

    baseline          float32 (the row every ratio is taken against)
    ptq-dynamic       TFLiteConverter's default optimization (dynamic-range int8)
    ptq-int8-matmul   post-training int8-matmul (calibrated on 100 training examples)
    qat-int8-matmul   quantize_model(teacher, QuantizationConfig.for_export("int8-matmul"), calibration=...) and
                      `--steps` steps of QAT (batch 32, AdamW, hard labels; `--kd` adds the teacher's KL), exported
                      as int8-matmul from its trained ranges

Also recorded: the QAT step time over the plain fine-tuning step time on the same batches (`train_step_ratio`).

    python benchmarks/sst2_qat_int8_matmul.py --teacher runs/sst2-teacher-2ep/00_finetune/model.keras --steps 600
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from tfbertopt.bench import harness  # noqa: E402
from tfbertopt.bench.harness import command_line  # noqa: E402
from tfbertopt.bench.retime import ROUND_ROBIN_NOTE, retime_round_robin, time_round_robin  # noqa: E402
from tfbertopt.data.glue import load_glue  # noqa: E402
from tfbertopt.data.pipeline import encode, steps_per_epoch  # noqa: E402
from tfbertopt.distillation import DistillationConfig  # noqa: E402
from tfbertopt.quantization import QuantizationConfig, activation_ranges, quantize_model  # noqa: E402
from tfbertopt.saving import load_model  # noqa: E402
from tfbertopt.train import finetune  # noqa: E402

KD = DistillationConfig(hard_label_weight=0.5, logits="kl", logits_weight=0.5, temperature=2.0)


def log(message: str) -> None:
    print(f"[qat_int8_matmul {time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="runs/sst2-teacher-2ep/00_finetune/model.keras")
    parser.add_argument("--task", default="sst2")
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--steps", type=int, default=600, help="QAT training steps")
    parser.add_argument("--learning-rate", type=float, default=1e-5)
    parser.add_argument("--kd", action="store_true", help="QAT with the float teacher's KL (0.5) beside labels")
    parser.add_argument("--timing-steps", type=int, default=40, help="steps timed for the plain/QAT step ratio")
    parser.add_argument("--out", default=None, help="default benchmarks/results/<task>_qat_int8_matmul.json")
    parser.add_argument("--work", default=None, help="default runs/<task>-qat-int8-matmul")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--dev-examples", type=int, default=None)
    parser.add_argument("--train-examples", type=int, default=None, help="first N train examples (smoke runs)")
    parser.add_argument("--timing-only", action="store_true",
                        help="re-time the files of an existing --out results file in place (scores kept)")
    parser.add_argument("--reexport", action="store_true",
                        help="export and verify the saved QAT model (<work>/qat.keras) again into --out's qat row, "
                             "keeping its training fields (after a change to the export, not to training)")
    parser.add_argument("--step-timing-only", action="store_true",
                        help="re-measure the QAT/plain step-time ratio (on a quiet machine) into --out")
    args = parser.parse_args(argv)
    out = args.out or f"benchmarks/results/{args.task}_qat_int8_matmul.json"
    work = args.work or f"runs/{args.task}-qat-int8-matmul"
    started = time.time()
    if args.timing_only:
        doc = retime_round_robin(out, work, command_line(), args.runs, args.passes, log=log)
        print(harness.markdown_table(doc["rows"]), flush=True)
        return 0

    os.makedirs(work, exist_ok=True)
    teacher = load_model(args.teacher, compile=False)
    dev = load_glue(args.task, "dev", data_dir=args.data_dir)
    if args.dev_examples:
        dev = dev.take(args.dev_examples)
    train = load_glue(args.task, "train", data_dir=args.data_dir)
    if args.train_examples:
        train = train.take(args.train_examples)
    order = np.random.default_rng(0).permutation(len(train))
    calibration = train._select(order[:1000])     # export_litert / quantize_model sample 100 of these
    features = encode(dev.texts, teacher.preprocessor)
    rows = []
    if args.step_timing_only:
        return retime_steps(args, out, train, calibration)
    if args.reexport:
        return reexport(args, out, work, dev, calibration, features)

    def measure(model, variant, tags, quantization, extra=None):
        log(f"{variant}: export {quantization} and verify on {len(dev)} dev examples")
        row = harness.measure_variant(model, variant, tags, None if variant == "baseline" else "baseline", dev,
                                      work, None, quantization=quantization, threads=(), features=features,
                                      calibration=calibration if quantization.startswith("int8") else None,
                                      extra=extra)
        rows.append(row)

    measure(teacher, "baseline", ["baseline", "teacher", "finetune"], "float32")
    measure(teacher, "ptq-dynamic", ["ptq-dynamic", "converter-default"], "dynamic")
    measure(teacher, "ptq-int8-matmul", ["ptq-int8", "mixed-precision", "equalized"], "int8-matmul")

    config = QuantizationConfig.for_export("int8-matmul")
    seconds = step_seconds(args, train, calibration)

    log("qat-int8-matmul: quantize_model + calibration")
    qat = quantize_model(teacher, config, calibration=calibration)
    scaled = [layer.path for layer in qat._flatten_layers()
              if getattr(layer, "output_channel_scales", False) and not np.allclose(np.asarray(layer.output_scale), 1)]
    log(f"{len(activation_ranges(qat))} activation ranges calibrated; per-channel output scales on {len(scaled)} "
        f"projections; training {args.steps} steps")
    epochs = max(1, math.ceil(args.steps / steps_per_epoch(len(train), 32)))   # MRPC: beyond one epoch
    cap = math.ceil(args.steps / epochs)
    history = finetune(qat, train, None, epochs=epochs, batch_size=32, learning_rate=args.learning_rate,
                       max_steps=cap, verbose=2, teacher=teacher if args.kd else None,
                       distillation=KD if args.kd else None)
    steps = epochs * min(cap, steps_per_epoch(len(train), 32))
    qat.save(os.path.join(work, "qat.keras"))
    measure(qat, "qat-int8-matmul", ["qat", "mixed-precision", "equalized"], "int8-matmul",
            {"steps": steps, **({"epochs": epochs} if epochs > 1 else {}), "learning_rate": args.learning_rate,
             "train_seconds": round(history.history["train_seconds"][0], 1),
             "train_step_ratio": seconds["qat_over_plain"], "output_scaled_projections": scaled,
             **({"distillation": KD.get_config()} if args.kd else {})})

    peak = time_round_robin(rows, work, args.runs, args.passes, log=log)
    extra = {"data": dev.source, "teacher": args.teacher, "timing": ROUND_ROBIN_NOTE.format(passes=args.passes),
             "calibration": "100 training examples (seeded sample of 1000)", "step_seconds": seconds,
             "total_seconds": round(time.time() - started, 1)}
    doc = harness.write_results(out, f"{args.task}_qat_int8_matmul", command_line(), rows, peak, extra=extra)
    print(harness.markdown_table(doc["rows"]), flush=True)
    log(f"wrote {out} in {time.time() - started:.0f} s")
    return 0


def step_seconds(args, train, calibration) -> dict:
    """The plain and QAT step times of the teacher on the same batches (`harness.step_seconds`)."""
    def load(kind):
        model = load_model(args.teacher, compile=False)
        return model if kind == "plain" else quantize_model(model, QuantizationConfig.for_export("int8-matmul"),
                                                            calibration=calibration)
    return harness.step_seconds(load, train, args.timing_steps, args.learning_rate, log=log)


def retime_steps(args, out, train, calibration) -> int:
    """--step-timing-only: the QAT/plain step ratio again (on a quiet machine) into --out and its qat row."""
    import json

    with open(out) as f:
        doc = json.load(f)
    doc["step_seconds"] = {**step_seconds(args, train, calibration),
                           "timed": f"back to back, {args.timing_steps} steps each (first 20 skipped), same batches, "
                                    f"re-measured on a quiet machine"}
    for row in doc["rows"]:
        if "qat" in row["tags"]:
            row["train_step_ratio"] = doc["step_seconds"]["qat_over_plain"]
    harness.rewrite_results(out, doc, later_commands=doc.get("later_commands", []) + [
        command_line() + "  (step_seconds)"])
    return 0


def reexport(args, out, work, dev, calibration, features) -> int:
    import json

    with open(out) as f:
        doc = json.load(f)
    old = next(r for r in doc["rows"] if r["variant"] == "qat-int8-matmul")
    kept = {k: old[k] for k in ("steps", "epochs", "learning_rate", "train_seconds", "train_step_ratio",
                                "output_scaled_projections", "distillation") if k in old}
    qat = load_model(os.path.join(work, "qat.keras"), compile=False)
    log(f"qat-int8-matmul: export the saved QAT model again and verify on {len(dev)} dev examples")
    row = harness.measure_variant(qat, "qat-int8-matmul", old["tags"], "baseline", dev, work, None,
                                  quantization="int8-matmul", threads=(), features=features,
                                  calibration=calibration, extra=kept)
    doc["rows"] = [row if r["variant"] == "qat-int8-matmul" else r for r in doc["rows"]]
    harness.rewrite_results(out, doc, later_commands=doc.get("later_commands", []) + [
        command_line() + "  (the qat-int8-matmul row)"])
    log(f"re-exported into {out}; re-time with --timing-only")
    return 0


if __name__ == "__main__":
    sys.exit(main())
