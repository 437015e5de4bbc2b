"""How many MACs a compressed SST-2 student must lose to reach a speed target on this machine: the float teacher, a
compressed student and copies of that student with whole encoder layers cut away (`plan_drop_layers` + `shrink`, no
retraining), each exported, verified on the full SST-2 dev set and timed back to back in one run.

The latency of a LiteRT file depends on its graph, not on its weights, so the cut copies measure the speed of a
shallower student before anyone trains one; their accuracy is that of the cut without retraining (a floor, not
what distillation into that depth would give), and their rows say so (`notes`).

    python benchmarks/sst2_student_depth.py \\
        --teacher runs/sst2-minilm-baseline/00_finetune/model.keras \\
        --student runs/sst2-compound-trimmed-aug/04_trim_vocabulary/model.keras --drop 4 2,4

`--drop 4 2,4` adds two rows, `student-cut-4` (layer 4 cut, 3 left) and `student-cut-2-4` (2 left); a
structured-pruned student's layers differ in width, so which layers go sets the MACs as much as how many. The
students are exported as `--quantization` (default dynamic: dynamic-range int8, which times within a few percent of
the issue-21 dynamic-int4-tables file and, unlike post-training int4 tables, passes verification without QAT). Every
file is timed once, after all are exported, in `--passes` round-robin passes.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfbertopt.bench import harness  # noqa: E402
from tfbertopt.bench.harness import command_line  # noqa: E402
from tfbertopt.bench.retime import ROUND_ROBIN_NOTE, time_round_robin  # noqa: E402
from tfbertopt.data.glue import load_glue  # noqa: E402
from tfbertopt.data.pipeline import encode  # noqa: E402
from tfbertopt.kernels import encoder_layers  # noqa: E402
from tfbertopt.pruning.structured import plan_drop_layers, shrink  # noqa: E402
from tfbertopt.saving import load_model  # noqa: E402

STUDENT_TAGS = ["layers", "shrink"]


def log(message: str) -> None:
    print(f"[sst2_student_depth {time.strftime('%H:%M:%S')}] {message}", flush=True)


def layer_lists(values: list[str]) -> list[list[int]]:
    """`["4", "2,4"]` -> `[[4], [2, 4]]`; a one-line error for anything else."""
    try:
        return [[int(k) for k in v.split(",")] for v in values]
    except ValueError:
        raise SystemExit(f"--drop takes comma-separated 1-based layer numbers (e.g. 4 2,4), got {values}") from None


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True, help="the uncompressed fine-tuned classifier (.keras)")
    parser.add_argument("--student", required=True, help="the compressed float student (.keras)")
    parser.add_argument("--drop", nargs="+", default=["4", "2,4"],
                        help="layer sets to cut from the student, each comma-separated 1-based numbers")
    parser.add_argument("--quantization", default="dynamic")
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--work", default="runs/sst2-student-depth")
    parser.add_argument("--out", default="benchmarks/results/sst2_student_depth.json")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args(argv)
    drops = layer_lists(args.drop)

    dev = load_glue("sst2", "validation", data_dir=args.data_dir)
    os.makedirs(args.work, exist_ok=True)
    teacher, student = load_model(args.teacher), load_model(args.student)
    depth = len(encoder_layers(student))
    rows = [harness.measure_variant(teacher, "baseline", ["baseline", "teacher"], None, dev, args.work, threads=())]
    features = encode(dev.texts, student.preprocessor)
    variants = [(f"student-{depth}-layers", student, [], f"the compressed student ({args.student})")]
    for cut in drops:
        model = shrink(student, plan_drop_layers(student, cut))
        kept = len(encoder_layers(model))
        variants.append((f"student-cut-{'-'.join(map(str, cut))}", model, cut,
                         f"the {depth}-layer student with layers {cut} cut ({kept} left), no retraining: its score "
                         f"is a floor for a student of this shape, its speed that of one"))
    for variant, model, cut, note in variants:
        log(f"{variant}: export {args.quantization}, verify on {len(dev)} dev sentences")
        rows.append(harness.measure_variant(
            model, variant, STUDENT_TAGS, "baseline", dev, args.work, quantization=args.quantization,
            features=features, threads=(), extra={"notes": note, "layers_cut": cut}))
    peak = time_round_robin(rows, args.work, args.runs, args.passes, log=log)
    doc = harness.write_results(args.out, "sst2_student_depth", command_line(), rows, peak,
                                extra={"timing": ROUND_ROBIN_NOTE.format(passes=args.passes)})
    print(harness.markdown_table(doc["rows"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
