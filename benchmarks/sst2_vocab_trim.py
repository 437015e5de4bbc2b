"""SST-2 with a trimmed vocabulary: the fine-tuned MiniLM-L6 teacher and copies of it whose WordPiece vocabulary keeps
only what SST-2's training text uses (with the special tokens and single characters), unbudgeted and within token
budgets, exported float32 and dynamic-range int8, each verified on the full dev set and timed in the same run.

    python benchmarks/sst2_vocab_trim.py --data-dir ../shared/data/glue [--model runs/.../model.keras]

Without --model the teacher is all-MiniLM-L6-v2 (`tfbertopt setup-model minilm-l6`) fine-tuned one epoch here and
cached in the work folder. Trimmed rows are scored with their own tokenizer, so `keras_score` includes what trimming
costs on dev sentences: `dev_texts_changed` split differently, `dev_texts_with_new_unk` gained [UNK]
(`dev_new_unk_pieces` pieces). With mediapipe installed, each trimmed quantized file also gets MediaPipe metadata and
MediaPipe's TextClassifier is run on the raw dev sentences (`mediapipe_agreement`: same label as the interpreter).

`--fill` tops each budget up with unseen pieces in vocabulary order (BERT's vocabulary is frequency-ordered, so this
is a general word list; rows `trim-<budget>-fill-*`); `--int4-tables` adds a "dynamic-int4-tables" row (int8
kernels, int4 embedding tables) beside each int8 one. The rows of one run share its teacher and timing.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from tfbertopt.bench import harness, latency  # noqa: E402
from tfbertopt.bench.mediapipe import TASK_LABELS  # noqa: E402
from tfbertopt.data.glue import load_glue  # noqa: E402
from tfbertopt.data.pipeline import encode  # noqa: E402
from tfbertopt.models import load_classifier  # noqa: E402
from tfbertopt.saving import load_model  # noqa: E402
from tfbertopt.train import finetune  # noqa: E402
from tfbertopt.vocabulary import select_tokens, trim_vocabulary, vocabulary_coverage  # noqa: E402


LABELS = TASK_LABELS["sst2"]


def log(message: str) -> None:
    print(f"[sst2_vocab_trim {time.strftime('%H:%M:%S')}] {message}", flush=True)


def teacher_model(path: str | None, work: str, train, dev):
    if path:
        return load_model(path), path
    cached = os.path.join(work, "teacher", "model.keras")
    if not os.path.exists(cached):
        log("fine-tuning all-MiniLM-L6-v2 on SST-2 for one epoch (resumable)")
        model = load_classifier("minilm-l6", num_classes=2, sequence_length=128)
        finetune(model, train, dev, epochs=1, batch_size=32, learning_rate=5e-5,
                 checkpoint_dir=os.path.join(work, "teacher", "checkpoints"), verbose=2)
        model.save(cached)
    return load_model(cached), cached


def mediapipe_agreement(model, path: str, dev, out_dir: str) -> float | None:
    if importlib.util.find_spec("mediapipe") is None:
        return None
    from tfbertopt.bench.mediapipe import mediapipe_agreement as agreement

    out = os.path.join(out_dir, os.path.basename(path)[:-7] + "_mp.tflite")
    return agreement(model, path, dev, LABELS, out, max_score_diff=0.05)["mediapipe_agreement"]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None, help="fine-tuned SST-2 classifier (.keras)")
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--work", default="runs/sst2-vocab-trim")
    parser.add_argument("--out", default="benchmarks/results/sst2_vocab_trim.json")
    parser.add_argument("--budgets", type=int, nargs="*", default=[8000, 4000])
    parser.add_argument("--fill", action="store_true",
                        help="fill each budget with unseen pieces in vocabulary order (select_tokens(fill=True)); "
                             "rows trim-<budget>-fill")
    parser.add_argument("--int4-tables", action="store_true",
                        help="add a dynamic-int4-tables row (int8 kernels, int4 tables) beside each int8 row")
    parser.add_argument("--runs", type=int, default=30)
    args = parser.parse_args(argv)

    train = load_glue("sst2", "train", data_dir=args.data_dir)
    dev = load_glue("sst2", "dev", data_dir=args.data_dir)
    teacher, teacher_path = teacher_model(args.model, args.work, train, dev)
    peak = latency.int8_peak_gmacs(num_threads=2)
    out_dir = os.path.join(args.work, "bench")
    os.makedirs(out_dir, exist_ok=True)
    features = encode(dev.texts, teacher.preprocessor)
    plans = [(teacher, "baseline", ["baseline", "teacher", "finetune"], "float32", {}),
             (teacher, "baseline-int8", ["ptq-dynamic"], "dynamic", {})]
    if args.int4_tables:
        plans.append((teacher, "baseline-int4-tables", ["ptq-dynamic", "int4"], "dynamic-int4-tables", {}))
    for budget in [None, *args.budgets]:
        fill = args.fill and budget is not None
        keep = select_tokens(teacher, train.texts, max_tokens=budget, fill=fill)
        log(f"budget {budget}: {keep.summary()}")
        trimmed = trim_vocabulary(teacher, keep)
        coverage = vocabulary_coverage(teacher, trimmed, dev.texts)
        extra = {"vocabulary": len(keep), "selection_coverage": round(keep.coverage, 4),
                 "dev_texts_changed": coverage["texts_changed"],
                 "dev_texts_with_new_unk": coverage["texts_with_new_unk"],
                 "dev_new_unk_pieces": coverage["new_unk_pieces"], "dev_pieces": coverage["pieces"]}
        name = "trim-train" if budget is None else f"trim-{budget}-fill" if fill else f"trim-{budget}"
        if budget is None:
            plans.append((trimmed, name, ["vocab-trim"], "float32", extra))
        plans.append((trimmed, f"{name}-int8", ["vocab-trim", "ptq-dynamic"], "dynamic", extra))
        if args.int4_tables:
            plans.append((trimmed, f"{name}-int4-tables", ["vocab-trim", "ptq-dynamic", "int4"], "dynamic-int4-tables",
                          extra))
    rows = []
    for model, variant, tags, quantization, extra in plans:
        log(f"{variant}: {quantization}")
        is_teacher = model is teacher
        row = harness.measure_variant(model, variant, tags, None if variant == "baseline" else "baseline", dev,
                                      out_dir, peak, quantization=quantization, runs=args.runs,
                                      features=features if is_teacher else None, extra=dict(extra))
        if not is_teacher and quantization != "float32":
            row["mediapipe_agreement"] = mediapipe_agreement(
                model, os.path.join(out_dir, f"{variant}_{quantization}.tflite"), dev, out_dir)
        rows.append(row)
        harness.write_results(args.out, os.path.splitext(os.path.basename(args.out))[0], harness.command_line(), rows,
                              peak,
                              extra={"data": dev.source, "teacher": teacher_path})
    print(harness.markdown_table(rows), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
