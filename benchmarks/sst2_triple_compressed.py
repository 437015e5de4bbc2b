"""SST-2 triple-compressed BERT: recipes/sst2_triple_compressed.yaml run end to end, then measured beside the
uncompressed fine-tuned teacher in the same process.

The recipe starts from the fine-tuned MiniLM-L6 teacher (runs/sst2-minilm-baseline/00_finetune/model.keras, written
by `tfbertopt run recipes/sst2_minilm_baseline.yaml`), fine-tunes it one epoch with LayerDrop p=0.2, removes layers
4 and 6, and exports LiteRT float32 and dynamic-range int8 (verified against Keras). The recipe's own benchmark stage
has no teacher row, so this script then exports and verifies four files on the full SST-2 dev set:

    baseline             the teacher, float32 (the row every ratio is taken against)
    baseline-int8        the teacher, dynamic-range int8 (int8 alone)
    layerdrop-drop-4-6   the recipe's final model, float32 (LayerDrop + layers dropped)
    triple-compressed    the recipe's final model, dynamic-range int8 (all three)

plus one row per other quantization the recipe's export stage writes (e.g. `<final>-int4`, each verified the same
way). A recipe with a `qat` stage is measured twice: the rows above from the float model just before it
(post-training quantization), and `<final>-qat-<quantization>` rows from the quantization-aware model, one per
quantization the export stage writes (float32 aside); when that stage only made the fake-quant twin (`epochs: 0`)
and a later stage trained it, the untrained twin's file is a `<final>-twin-<target>` row too (the post-training
file, verified against the model it simulates). Then, with `--peers` ai-edge-quantizer's ready recipes on
the float32 file and Keras' own `quantize` on the float model (`tfbertopt.bench.peers`), for comparison the float model as full-integer int8 (calibrated; not the paper's method), and, for a
single-sentence task with mediapipe installed, MediaPipe's TextClassifier on the raw dev sentences of every
compressed quantized file (`mediapipe_agreement`: same label as the interpreter; `mediapipe_score`). It times them
all back to back after measuring this machine's int8 peak (batch 1, sequence 128, 2 and 1 threads), so that no
training or export runs between timings: `--passes` round-robin passes, the fastest pass per file, because other
work on this shared 2-core machine comes in bursts that only slow a pass down. `--timing-only` re-times the files of
an existing results file the same way.

    python benchmarks/sst2_triple_compressed.py --data-dir ../shared/data/glue

`--kind compound` (recipes/sst2_compound_10x.yaml), `--kind compound-trimmed` (recipes/sst2_compound_trimmed.yaml)
and `--kind embedding-factorization`
(recipes/sst2_embedding_factorize.yaml) measure those recipes the same way, under their own row names and tags; the
task is the recipe's.

A finished recipe run is resumed, not repeated (its stages are recorded in <work>/state.json). The files are written
as <work>/bench/<variant>_<quantization>.tflite (the compressed ones are byte-identical to the recipe's exports).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from tfbertopt.bench import harness  # noqa: E402
from tfbertopt.bench.harness import command_line  # noqa: E402
from tfbertopt.bench.mediapipe import TASK_LABELS, mediapipe_agreement  # noqa: E402
from tfbertopt.bench.peers import ai_edge_quantizer_rows, keras_quantize_rows  # noqa: E402
from tfbertopt.bench.retime import ROUND_ROBIN_NOTE, retime_round_robin, time_round_robin  # noqa: E402
from tfbertopt.data.glue import load_glue  # noqa: E402
from tfbertopt.data.pipeline import encode  # noqa: E402
from tfbertopt.export.litert import export_litert  # noqa: E402
from tfbertopt.export.verify import verify_litert  # noqa: E402
from tfbertopt.kernels import count_params  # noqa: E402
from tfbertopt.quantizers.modes import MODES  # noqa: E402
from tfbertopt.recipe import load_recipe  # noqa: E402
from tfbertopt.runner import run_recipe  # noqa: E402
from tfbertopt.saving import load_model  # noqa: E402
from tfbertopt.train import predict_logits  # noqa: E402

COMPRESSED_TAGS = ["layerdrop", "layers", "shrink"]
# --kind: which recipe result the run measures (row names and tags).
KINDS = {"triple-compressed": {"float_variant": "layerdrop-drop-4-6", "final_variant": "triple-compressed", "tags": ["recipe", *COMPRESSED_TAGS],
                               "final_tags": ["recipe", "triple-compressed", *COMPRESSED_TAGS]},
         "compound": {"float_variant": "compound-float32", "final_variant": "compound",
                      "tags": ["recipe", "layerdrop", "layers", "heads", "ffn", "shrink", "embedding-factorization",
                               "distill", "logits-kd"],
                      "final_tags": ["recipe", "compound", "layerdrop", "layers", "heads", "ffn", "shrink",
                                     "embedding-factorization", "distill", "logits-kd"]},
         "compound-trimmed": {"float_variant": "compound-trimmed-float32", "final_variant": "compound-trimmed",
                              "tags": ["recipe", "layerdrop", "layers", "heads", "ffn", "shrink",
                                       "embedding-factorization", "distill", "logits-kd", "vocab-trim"],
                              "final_tags": ["recipe", "compound", "layerdrop", "layers", "heads", "ffn", "shrink",
                                             "embedding-factorization", "distill", "logits-kd", "vocab-trim"]},
         "embedding-factorization": {"float_variant": "embedding-factorized",
                                     "final_variant": "embedding-factorized-int8",
                                     "tags": ["embedding-factorization", "distill", "logits-kd"],
                                     "final_tags": ["embedding-factorization", "distill", "logits-kd"]}}


def log(message: str) -> None:
    print(f"[sst2_triple_compressed {time.strftime('%H:%M:%S')}] {message}", flush=True)


TIMING_NOTE = ROUND_ROBIN_NOTE


def time_rows(rows: list[dict], bench_dir: str, runs: int, passes: int) -> float:
    return time_round_robin(rows, bench_dir, runs, passes, log=log)


def retime(args) -> int:
    """--timing-only: re-times the files of an existing results file (same rows, same verification) in place."""
    with open(args.out) as f:
        work = json.load(f).get("recipe_dir", args.work)
    doc = retime_round_robin(args.out, os.path.join(work, "bench"), command_line(), args.runs, args.passes, log=log)
    print(harness.markdown_table(doc["rows"]), flush=True)
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="recipes/sst2_triple_compressed.yaml")
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--teacher", default=None, help="the uncompressed model (default: the recipe's model)")
    parser.add_argument("--out", default="benchmarks/results/sst2_triple_compressed.json")
    parser.add_argument("--work", default="runs/sst2-triple-compressed")
    parser.add_argument("--runs", type=int, default=30, help="timed LiteRT runs per variant and thread count")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="recipe override, as `tfbertopt run --set` (e.g. data.max_train_examples=64 for a "
                             "smoke test)")
    parser.add_argument("--skip-full-int8", action="store_true", help="skip the full-integer int8 comparison row")
    parser.add_argument("--peers", action="store_true",
                        help="add ai-edge-quantizer's ready recipes on the compressed float32 file and Keras' "
                             "quantize(int8 / int4) of the float model (peer rows)")
    parser.add_argument("--passes", type=int, default=7, help="round-robin timing passes (fastest reported)")
    parser.add_argument("--timing-only", action="store_true",
                        help="only re-time the files of an existing --out results file (after a noisy first run)")
    parser.add_argument("--dev-examples", type=int, default=None, help="measure on the first N dev examples only")
    parser.add_argument("--kind", choices=sorted(KINDS), default="triple-compressed",
                        help="which recipe result this is (row names and tags)")
    parser.add_argument("--name", default=None, help="benchmark name in the JSON (default: the --out file's stem)")
    args = parser.parse_args(argv)
    if args.timing_only:
        return retime(args)
    started = time.time()

    recipe = load_recipe(args.recipe, overrides=[f"data.dir={args.data_dir}", *args.set])
    teacher_path = args.teacher or recipe["model"]
    if not teacher_path.endswith(".keras") or not os.path.exists(teacher_path):
        parser.error(f"the teacher must be a .keras file (got {teacher_path}); run "
                     f"`tfbertopt run recipes/sst2_minilm_baseline.yaml` first, or pass --teacher")
    log(f"recipe {args.recipe} -> {args.work}")
    run = run_recipe(recipe, output_dir=args.work)
    recipe_seconds = {k: v.get("seconds") for k, v in run.state["finished"].items()}
    log(f"recipe done: stage seconds {recipe_seconds}")
    compressed = run.model
    # With a `qat` stage, the model just before it is the float student: its files are the post-training rows, the
    # quantization-aware model's files the QAT rows beside them.
    finished = list(run.state["finished"].items())
    qat_at = next((i for i, (key, _) in enumerate(finished) if key.endswith("_qat")), None)
    before_qat = None
    if qat_at is not None:
        path = next(out["model"] for _, out in reversed(finished[:qat_at]) if out.get("model"))
        before_qat = load_model(path, compile=False)
    student = before_qat or compressed
    # A qat stage with epochs: 0 that a later stage trained (distill, student: previous): its untrained fake-quant
    # twin is the post-training file, verified against the model it simulates; measured beside the trained one.
    twin, twin_target = None, None
    qat_tags = finished[qat_at][1].get("tags", ["qat"]) if qat_at is not None else []
    if qat_at is not None and recipe["stages"][qat_at]["qat"]["epochs"] == 0 and \
            any(out.get("model") for _, out in finished[qat_at + 1:]):
        twin = load_model(finished[qat_at][1]["model"], compile=False)
        twin_target = recipe["stages"][qat_at]["qat"]["target"]
    recipe_exports = [{"path": e["path"], "quantization": e["quantization"], "size_bytes": e["size_bytes"],
                       "tflite_score": round(e["verification"]["tflite_score"], 4),
                       "passed": e["verification"]["passed"]}
                      for out in run.state["finished"].values() for e in out.get("exports", [])]
    plan = next((out["plan"] for k, out in run.state["finished"].items() if "plan" in out), None)
    # What the vocabulary trim kept and cost (dev metrics of the model just before and just after it).
    trim = next(({k: out[k] for k in ("kept", "vocabulary_size", "coverage", "dev_before", "dev_after") if k in out}
                 for key, out in run.state["finished"].items() if key.endswith("_trim_vocabulary")), None)

    task = recipe["task"]
    kind = dict(KINDS[args.kind])
    # The student's rows (float and quantized) also carry what the recipe's training stages did (e.g. hidden-kd,
    # augment), not only the kind's fixed tags; the QAT stage's own tags go to the QAT rows only, as they always have.
    trained = [t for key, out in finished[:qat_at] if not key.endswith(("_export", "_benchmark"))
               for t in out.get("tags", [])]
    for key in ("tags", "final_tags"):
        kind[key] = list(dict.fromkeys([*kind[key], *trained]))
    compressed_tags = kind["tags"]
    name = args.name or os.path.splitext(os.path.basename(args.out))[0]
    dev = load_glue(task, "dev", data_dir=args.data_dir)
    if args.dev_examples:
        dev = dev.take(args.dev_examples)
    teacher = load_model(teacher_path, compile=False)
    bench_dir = os.path.join(args.work, "bench")
    os.makedirs(bench_dir, exist_ok=True)

    # 1. Export and verify every file on the full dev set (no timing yet).
    variants = [(teacher, "baseline", ["baseline", "teacher", "finetune"], "float32"),
                (teacher, "baseline-int8", ["ptq-dynamic"], "dynamic"),
                (student, kind["float_variant"], compressed_tags, "float32"),
                (student, kind["final_variant"], [*kind["final_tags"], "ptq-dynamic"], "dynamic")]
    exported = [q for stage in recipe["stages"] for name, options in stage.items() if name == "export"
                for q in options["quantization"]]
    variants += [(student, f"{kind['final_variant']}-{q}", [*kind["final_tags"], *MODES[q].tags], q)
                 for q in dict.fromkeys(exported) if q not in ("float32", "dynamic") and MODES[q].litert]
    if before_qat is not None:
        variants += [(compressed, f"{kind['final_variant']}-qat-{q}", [*kind["final_tags"], *qat_tags, *MODES[q].tags],
                      q)
                     for q in dict.fromkeys(exported) if q != "float32" and MODES[q].litert]
    if twin is not None:    # untrained: the qat stage's tags but "qat"
        variants.append((twin, f"{kind['final_variant']}-twin-{twin_target}",
                         [*kind["final_tags"], *[t for t in qat_tags if t != "qat"], *MODES[twin_target].tags],
                         twin_target))
    features = {}
    rows = []
    for model, variant, tags, quantization in variants:
        if id(model) not in features:
            features[id(model)] = encode(dev.texts, model.preprocessor)
        log(f"{variant}: export {quantization} and verify on {len(dev)} dev examples")
        rows.append(harness.measure_variant(model, variant, tags, None if variant == "baseline" else "baseline", dev,
                                            bench_dir, None, quantization=quantization, threads=(),
                                            features=features[id(model)]))

    # Full-integer int8 (activations int8 too, calibrated on 100 training sentences) of the same model: not the
    # paper's method (its int8 linear layers are dynamic-range), measured for comparison. Its verification verdict
    # is recorded, not enforced.
    if not args.skip_full_int8:
        variant = f"{kind['float_variant']}-full-int8"
        log(f"{variant}: export full-integer int8 (calibrated) and verify on {len(dev)} dev examples")
        train = load_glue(task, "train", data_dir=args.data_dir)
        feats = features[id(student)]
        result = export_litert(student, os.path.join(bench_dir, f"{variant}_int8.tflite"), "int8", 128,
                               calibration=train)
        report = verify_litert(result.path, student, dev, quantized=True, features=feats,
                               keras_logits=predict_logits(student, feats))
        log(f"{variant}: {report.summary()}")
        row = harness.litert_row(variant, [*compressed_tags, "ptq-int8"], "baseline", result, report, dev.task.name,
                                 harness.model_macs(student, 128), count_params(student), None, None, None)
        row["dev_examples"] = len(dev)
        row["notes"] = f"full-integer int8 PTQ, 100 calibration examples from {task} train; not the paper's method"
        rows.append(row)

    peer_failures = []
    if args.peers:   # LiteRT's own quantizer on the same compressed float32 file, as its user would run it
        rows += ai_edge_quantizer_rows(student, os.path.join(bench_dir, f"{kind['float_variant']}_float32.tflite"),
                                       dev, bench_dir, prefix=f"{kind['float_variant']}-", tags=compressed_tags,
                                       features=features[id(student)], log=log, failures=peer_failures)
        rows += keras_quantize_rows(student, dev, bench_dir, prefix=f"{kind['float_variant']}-", tags=compressed_tags,
                                    features=features[id(student)], log=log, failures=peer_failures)

    # MediaPipe's TextClassifier on the raw dev sentences of every compressed quantized file (single sentences only).
    labels = TASK_LABELS.get(task)
    finals = {variant: model for model, variant, _, q in variants if model is not teacher and q != "float32"}
    if labels and importlib.util.find_spec("mediapipe") is not None:
        for row in rows:
            if row["variant"] in finals:
                path = os.path.join(bench_dir, f"{row['variant']}_{row['quantization']}.tflite")
                try:
                    model = finals[row["variant"]]
                    found = mediapipe_agreement(model, path, dev, labels, features=features[id(model)])
                except Exception as error:   # recorded: a file MediaPipe cannot be given is a result too
                    row["mediapipe_error"] = str(error).splitlines()[0]
                    log(f"{row['variant']}: MediaPipe metadata/run failed: {row['mediapipe_error']}")
                    continue
                log(f"{row['variant']}: MediaPipe agrees with the interpreter on {found['mediapipe_agreement']:.2%}"
                    f" of {len(dev)} raw dev sentences (MediaPipe accuracy {found['mediapipe_score']:.4f})")
                row.update({k: v for k, v in found.items() if k != "mediapipe_file"})

    # 2. Time every file back to back, after measuring the int8 peak.
    peak = time_rows(rows, bench_dir, args.runs, args.passes)

    extra = {"data": dev.source, "teacher": teacher_path, "recipe": args.recipe, "recipe_dir": args.work,
             "recipe_stage_seconds": recipe_seconds, "recipe_exports": recipe_exports, "plan": plan,
             "vocabulary_trim": trim, "peer_failures": peer_failures,
             "timing": TIMING_NOTE.format(passes=args.passes),
             "total_seconds": round(time.time() - started, 1)}
    doc = harness.write_results(args.out, name, command_line(), rows, peak, extra=extra)
    print(harness.markdown_table(doc["rows"]), flush=True)
    log(f"wrote {args.out} in {time.time() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
