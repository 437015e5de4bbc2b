"""SST-2 int4 weights: tfbertopt's "int4" and "int4-block32" exports beside the float32 teacher, tfbertopt's
dynamic-range int8 (the converter's default), and ai-edge-quantizer's ready recipes on the converter's float32 file
(`dynamic_wi8_afp32`, `dynamic_wi4_afp32`, `dynamic_wi4b32`: they leave the GATHER token table float), all verified
on the full SST-2 dev set and then timed back to back (batch 1, sequence 128, 2 and 1 threads, round robin).

    python benchmarks/sst2_int4.py --model runs/sst2-vocab-trim/teacher/model.keras

`--qat-steps N` adds a quantization-aware row per `--qat-targets` mode (default "int4"):
`QuantizationConfig.for_export(mode)` trained N steps on SST-2 train from the same model, then exported in that mode
(its trained kernels and tables stored exactly). `--no-peers` leaves out ai-edge-quantizer's recipes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfbertopt.bench import harness  # noqa: E402
from tfbertopt.bench.harness import command_line  # noqa: E402
from tfbertopt.bench.peers import ai_edge_quantizer_rows  # noqa: E402
from tfbertopt.bench.retime import ROUND_ROBIN_NOTE, time_round_robin  # noqa: E402
from tfbertopt.data.glue import load_glue  # noqa: E402
from tfbertopt.data.pipeline import encode  # noqa: E402
from tfbertopt.saving import load_model  # noqa: E402

def log(message: str) -> None:
    print(f"[sst2_int4 {time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="runs/sst2-vocab-trim/teacher/model.keras")
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--work", default="runs/sst2-int4")
    parser.add_argument("--out", default="benchmarks/results/sst2_int4.json")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--dev-examples", type=int, default=None)
    parser.add_argument("--qat-steps", type=int, default=0)
    parser.add_argument("--qat-targets", default="int4", help="comma-separated QAT modes (int4, int4-block32, "
                                                                  "dynamic-int4-tables)")
    parser.add_argument("--no-peers", action="store_true", help="leave out ai-edge-quantizer's ready recipes")
    args = parser.parse_args(argv)
    started = time.time()
    os.makedirs(args.work, exist_ok=True)
    dev = load_glue("sst2", "dev", data_dir=args.data_dir)
    if args.dev_examples:
        dev = dev.take(args.dev_examples)
    model = load_model(args.model, compile=False)
    features = encode(dev.texts, model.preprocessor)
    rows = []
    ours = [("baseline", ["baseline", "teacher", "finetune"], "float32"),
            ("baseline-int8", ["ptq-dynamic", "converter-default"], "dynamic"),
            ("int4", ["int4", "ptq-dynamic"], "int4"),
            ("int4-block32", ["int4", "ptq-dynamic"], "int4-block32"),
            ("dynamic-int4-tables", ["int4", "ptq-dynamic"], "dynamic-int4-tables")]
    for variant, tags, quantization in ours:
        log(f"{variant}: export {quantization} and verify on {len(dev)} dev examples")
        rows.append(harness.measure_variant(model, variant, tags, None if variant == "baseline" else "baseline", dev,
                                            args.work, None, quantization=quantization, threads=(),
                                            features=features))
    if not args.no_peers:
        rows += ai_edge_quantizer_rows(model, os.path.join(args.work, "baseline_float32.tflite"), dev, args.work,
                                       features=features, log=log)
    if args.qat_steps:
        from tfbertopt.quantization import QuantizationConfig, quantize_model
        from tfbertopt.train import finetune

        train = load_glue("sst2", "train", data_dir=args.data_dir)
        for target in args.qat_targets.split(","):
            log(f"qat-{target}: quantization-aware training for {target}, {args.qat_steps} steps")
            qat = quantize_model(load_model(args.model, compile=False), QuantizationConfig.for_export(target))
            finetune(qat, train, epochs=1, max_steps=args.qat_steps, learning_rate=2e-5, verbose=2)
            row = harness.measure_variant(qat, f"qat-{target}", ["int4", "qat"], "baseline", dev, args.work, None,
                                          quantization=target, threads=())
            row["notes"] = (f"QuantizationConfig.for_export({target!r}) (kernels and tables), {args.qat_steps} steps "
                            f"at lr 2e-5 from the baseline")
            rows.append(row)

    peak = time_round_robin(rows, args.work, args.runs, args.passes, log=log)
    extra = {"data": dev.source, "model": args.model, "timing": ROUND_ROBIN_NOTE.format(passes=args.passes),
             "total_seconds": round(time.time() - started, 1)}
    name = os.path.splitext(os.path.basename(args.out))[0]
    doc = harness.write_results(args.out, name, command_line(), rows, peak, extra=extra)
    print(harness.markdown_table(doc["rows"]), flush=True)
    log(f"wrote {args.out} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
