"""SST-2 int8 benchmark: post-training quantization and quantization-aware training of the fine-tuned MiniLM-L6,
beside the float model and the plain converter default (dynamic range), in one run.

Teacher: runs/sst2-minilm-baseline/00_finetune/model.keras (`tfbertopt run recipes/sst2_minilm_baseline.yaml`).
Calibration: 100 SST-2 training sentences (seeded sample of 1000). Every row is exported to LiteRT, verified
against its Keras model on the full dev set (872) and timed at batch 1, sequence 128, 2 and 1 threads.

    python benchmarks/sst2_quantization.py --data-dir ../shared/data/glue

Sentence pairs: `--task mrpc` runs the same rows on MRPC (calibration from MRPC train pairs; defaults then become
--teacher runs/mrpc-minilm-baseline/00_finetune/model.keras, --out benchmarks/results/mrpc_quantization.json,
--work runs/mrpc-quantization), e.g.

    python benchmarks/sst2_quantization.py --task mrpc --steps 300

Rows:
  baseline           the float32 export.
  ptq-dynamic        TFLiteConverter's default optimization (int8 weights, float activations).
  ptq-int8-keras-mask  full-integer PTQ with Keras' -1e9 attention mask (what a plain conversion gives).
  ptq-int8           full-integer PTQ with tfbertopt's int8-safe mask floor (the default).
  ptq-16x8           int16 activations, int8 weights (`--add-16x8` appends it to an existing result).
  qat-int8           quantize_model (ranges from the same calibration) + `--steps` steps of QAT (batch 32, AdamW,
                     hard labels, optionally `--kd` with the teacher's logits), exported full-integer: the trained
                     ranges become the int8 scales.
Also recorded: the QAT step time over the plain fine-tuning step time on the same batches (`step_seconds`).
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from tfbertopt.bench import harness, latency  # noqa: E402
from tfbertopt.bench.harness import StepTimer, command_line  # noqa: E402
from tfbertopt.data.glue import load_glue  # noqa: E402
from tfbertopt.data.pipeline import encode, step_budget, steps_per_epoch  # noqa: E402
from tfbertopt.distillation import DistillationConfig  # noqa: E402
from tfbertopt.quantization import activation_ranges, quantize_model  # noqa: E402
from tfbertopt.saving import load_model  # noqa: E402
from tfbertopt.train import finetune  # noqa: E402

KD = DistillationConfig(hard_label_weight=0.5, logits="kl", logits_weight=0.5, temperature=2.0)


def log(message: str) -> None:
    print(f"[sst2_quantization {time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="sst2", choices=["sst2", "mrpc"], help="GLUE task (sst2 or mrpc)")
    parser.add_argument("--teacher", default=None,
                        help="default runs/sst2-minilm-baseline/00_finetune/model.keras "
                             "(runs/mrpc-minilm-baseline/... for --task mrpc)")
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--steps", type=int, default=1500, help="QAT training steps")
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument("--kd", action="store_true", help="QAT with the float teacher's KL (0.5) beside labels")
    parser.add_argument("--timing-steps", type=int, default=60, help="steps timed for the plain/QAT step ratio")
    parser.add_argument("--out", default=None, help="default benchmarks/results/<task>_quantization.json")
    parser.add_argument("--work", default=None, help="default runs/<task>-quantization")
    parser.add_argument("--notes", default=None, help="free text recorded as `notes` in --out")
    parser.add_argument("--runs", type=int, default=30, help="timed LiteRT runs per variant")
    parser.add_argument("--train-examples", type=int, default=None, help="use the first N train examples (smoke runs)")
    parser.add_argument("--timing-only", action="store_true",
                        help="only re-measure the QAT/plain step-time ratio (on a quiet machine) into --out")
    parser.add_argument("--add-16x8", action="store_true", help="measure only the ptq-16x8 row and add it to --out")
    args = parser.parse_args(argv)
    args.teacher = args.teacher or f"runs/{args.task}-minilm-baseline/00_finetune/model.keras"
    args.out = args.out or f"benchmarks/results/{args.task}_quantization.json"
    args.work = args.work or f"runs/{args.task}-quantization"
    if args.timing_only:
        return retime_steps(args)

    train = load_glue(args.task, "train", data_dir=args.data_dir)
    dev = load_glue(args.task, "dev", data_dir=args.data_dir)
    if args.train_examples:
        train = train.take(args.train_examples)
    order = np.random.default_rng(0).permutation(len(train))
    calibration = train._select(order[:1000])     # export_litert / quantize_model sample 100 of these
    os.makedirs(args.work, exist_ok=True)
    log(f"data: {len(train)} train, {len(dev)} dev; teacher {args.teacher}")
    teacher = load_model(args.teacher, compile=False)
    features = encode(dev.texts, teacher.preprocessor)
    peak = latency.int8_peak_gmacs(num_threads=2)
    log(f"int8 peak {peak:.0f} GMAC/s")
    rows, step_seconds = [], {}
    command, qat_steps, later = command_line(), args.steps, {}
    if args.add_16x8:
        import json

        with open(args.out) as f:
            doc = json.load(f)
        rows[:] = [r for r in doc["rows"] if r["variant"] != "ptq-16x8"]
        step_seconds.update(doc.get("step_seconds", {}))
        # The file stays the main run's: its command and QAT steps; this command is recorded beside it.
        command, qat_steps = doc["command"], doc.get("qat_steps", args.steps)
        later["later_commands"] = doc.get("later_commands", []) + [command_line() + "  (the ptq-16x8 row)"]

    def measure(model, variant, tags, quantization, extra=None, export_options=None):
        log(f"{variant}: export {quantization}, verify, time")
        rows.append(harness.measure_variant(
            model, variant, tags, None if variant == "baseline" else "baseline", dev, args.work, peak,
            quantization=quantization, runs=args.runs, features=features, extra=extra,
            calibration=calibration if quantization in ("int8", "16x8") else None, export_options=export_options))
        unit = "SST-2 train sentences" if args.task == "sst2" else f"{args.task.upper()} train examples"
        harness.write_results(args.out, f"{args.task}_quantization", command, rows, peak,
                              extra={"data": dev.source, "teacher": args.teacher, "qat_steps": qat_steps,
                                     "calibration": f"100 {unit}", "step_seconds": step_seconds,
                                     **({"notes": args.notes} if args.notes else {}), **later})

    if args.add_16x8:
        measure(teacher, "ptq-16x8", ["ptq-16x8"], "16x8")
        return 0
    measure(teacher, "baseline", ["baseline", "teacher", "finetune"], "float32")
    measure(teacher, "ptq-dynamic", ["ptq-dynamic"], "dynamic")
    measure(teacher, "ptq-int8-keras-mask", ["ptq-int8"], "int8", {"attention_masking": "keras"},
            {"attention_masking": "keras"})
    measure(teacher, "ptq-int8", ["ptq-int8"], "int8", {"attention_masking": "floor"})

    # Step-time ratio: the same number of plain and QAT steps on the same batches (first 20 skipped as tracing).
    timer = StepTimer()
    plain = load_model(args.teacher, compile=False)
    finetune(plain, train, None, epochs=1, batch_size=32, learning_rate=args.learning_rate,
             max_steps=args.timing_steps, callbacks=[timer], verbose=2)
    step_seconds["plain"] = round(timer.median, 4)
    del plain

    log("qat-int8: quantize_model + calibration")
    qat = quantize_model(teacher, calibration=calibration)
    log(f"qat-int8: {len(activation_ranges(qat))} activation ranges calibrated; training {args.steps} steps")
    timer = StepTimer()
    epochs, cap = step_budget(len(train), args.steps)   # --steps (+ < epochs), also beyond one epoch (MRPC)
    history = finetune(qat, train, None, epochs=epochs, batch_size=32, learning_rate=args.learning_rate,
                       max_steps=cap, callbacks=[timer], verbose=2,
                       teacher=teacher if args.kd else None, distillation=KD if args.kd else None)
    step_seconds["qat"] = round(timer.median, 4)
    step_seconds["qat_over_plain"] = round(step_seconds["qat"] / step_seconds["plain"], 3)
    log(f"qat step {step_seconds['qat']} s vs plain {step_seconds['plain']} s")
    qat.save(os.path.join(args.work, "qat.keras"))
    measure(qat, "qat-int8", ["qat", "ptq-int8"], "int8",
            {"steps": epochs * min(cap, steps_per_epoch(len(train), 32)), **({"epochs": epochs} if epochs > 1 else {}),
             "learning_rate": args.learning_rate,
             "train_seconds": round(history.history["train_seconds"][0], 1),
             "train_step_ratio": step_seconds["qat_over_plain"],
             **({"distillation": KD.get_config()} if args.kd else {})})
    print(harness.markdown_table(rows), flush=True)
    return 0


def retime_steps(args) -> int:
    """Plain and QAT steps timed back to back on the same batches; updates `step_seconds` and the qat row."""
    import json

    train = load_glue(args.task, "train", data_dir=args.data_dir).take(32 * (args.timing_steps + 5))
    with open(args.out) as f:
        doc = json.load(f)

    def load(kind):
        model = load_model(args.teacher, compile=False)
        return model if kind == "plain" else quantize_model(model, calibration=train, calibration_steps=100)

    seconds = harness.step_seconds(load, train, args.timing_steps, args.learning_rate, verbose=2, log=log)
    doc["step_seconds"] = {**seconds, "timed": f"back to back, {args.timing_steps} steps each (first 20 skipped), "
                                              f"same batches, quiet machine"}
    for row in doc["rows"]:
        if "qat" in row["tags"]:
            row["train_step_ratio"] = seconds["qat_over_plain"]
    harness.rewrite_results(args.out, doc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
