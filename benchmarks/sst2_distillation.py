"""SST-2 distillation benchmark: students distilled from the fine-tuned MiniLM-L6 teacher, beside the teacher and
beside the same student trained on hard labels only, in one run.

Teacher: runs/sst2-minilm-baseline/00_finetune/model.keras (`tfbertopt run recipes/sst2_minilm_baseline.yaml`).
Every student gets the same budget (`--steps` steps of batch 32 over real SST-2 train, AdamW with warm-up/decay),
is scored on the full SST-2 dev set, exported to LiteRT float32, verified against Keras and timed (batch 1,
sequence 128, 2 and 1 threads). Rows are written after every variant, so a stopped run keeps what it measured.

    python benchmarks/sst2_distillation.py --data-dir ../shared/data/glue

Sentence pairs: `--task mrpc` runs the same students on MRPC (defaults then become
--teacher runs/mrpc-minilm-baseline/00_finetune/model.keras, --out benchmarks/results/mrpc_distillation.json,
--work runs/mrpc-distillation), e.g. three epochs' worth of MRPC (115 steps of 32 each):

    python benchmarks/sst2_distillation.py --task mrpc --steps 345 \
        --variants student-3l-hard,student-3l-kd,student-3l-tinybert,student-3l-pkd

Variants:
  student-3l-hard    DistilBERT's init (teacher layers 1, 3, 5 of 6), hard labels only: the control.
  student-3l-kd      same init, 0.5 hard CE + 0.5 Hinton KL at T=2 (DistilBERT's task-distillation loss).
  student-3l-tinybert  same init, KL + hidden-state MSE + attention-probability MSE + embedding MSE on a uniform
                     layer map (TinyBERT's losses in one stage).
  bilstm / cnn       Tang et al.: a one-layer BiLSTM (150 units per direction) / a Kim CNN (100 filters of widths
                     3, 4, 5) over a copy of the teacher's word embeddings, trained on the teacher's logits by MSE
                     from an on-disk teacher-output cache (the teacher runs once), `--word-steps` steps, lr 1e-3.
  bilstm-siamese / cnn-siamese  the same students on sentence pairs as Tang et al. build them: each sentence
                     encoded alone by the shared BiLSTM/CNN, then [a, b, a*b, |a-b|] (bilstm/cnn run over the
                     packed pair); not in the default --variants.
  student-3l-pkd     same init, Patient-KD Skip (Sun et al. 2019): 0.5 hard CE + 0.5 KL at T=10 + 100 x MSE of the
                     normalised [CLS] states on the "skip" layer map (recipes/sst2_pkd.yaml's loss); not in the
                     default --variants.
  gmp-90 / gmp-90-kd  polynomial-decay magnitude pruning to 90% over 70% of `--gmp-steps` steps, without and with
                     the teacher's KL (distillation-guided pruning, issue 3's accuracy goal); `--teacher-cache`
                     takes the teacher's logits from an on-disk cache instead of running it.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


from tfbertopt.bench import harness, latency  # noqa: E402
from tfbertopt.bench.harness import StepTimer, command_line  # noqa: E402
from tfbertopt.data.glue import load_glue  # noqa: E402
from tfbertopt.data.pipeline import encode, step_budget, steps_per_epoch  # noqa: E402
from tfbertopt.distillation import (  # noqa: E402
    DistillationConfig,
    TeacherCache,
    bilstm_student,
    cache_teacher_outputs,
    cnn_student,
    student_from_teacher,
)
from tfbertopt.pruning import PolynomialDecay, UpdatePruningStep, get_pruning, prune_low_magnitude, strip_pruning  # noqa: E402,E501
from tfbertopt.saving import load_model  # noqa: E402
from tfbertopt.train import finetune  # noqa: E402

KD = DistillationConfig(hard_label_weight=0.5, logits="kl", logits_weight=0.5, temperature=2.0)
TINYBERT = DistillationConfig(hard_label_weight=0.0, logits="kl", logits_weight=1.0, temperature=1.0, hidden="mse",
                              hidden_weight=1.0, attention="mse", attention_weight=1.0, embedding_weight=1.0,
                              layer_map="uniform")
TANG = DistillationConfig(hard_label_weight=0.0, logits="mse", logits_weight=1.0)
PKD = DistillationConfig(hard_label_weight=0.5, logits="kl", logits_weight=0.5, temperature=10.0, cls_weight=100.0,
                         layer_map="skip")
ALL = ["student-3l-kd", "student-3l-hard", "student-3l-tinybert", "gmp-90-kd", "gmp-90", "bilstm", "cnn"]
WORD_STUDENTS = ("bilstm", "cnn", "bilstm-siamese", "cnn-siamese")
# The default run (ALL) is unchanged; PKD and the siamese pair students are asked for by name.
CHOICES = ALL + ["student-3l-pkd", "bilstm-siamese", "cnn-siamese"]


def log(message: str) -> None:
    print(f"[sst2_distillation {time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="sst2", choices=["sst2", "mrpc"], help="GLUE task (sst2 or mrpc)")
    parser.add_argument("--teacher", default=None,
                        help="default runs/sst2-minilm-baseline/00_finetune/model.keras "
                             "(runs/mrpc-minilm-baseline/... for --task mrpc)")
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--steps", type=int, default=2000, help="training steps per student")
    parser.add_argument("--gmp-steps", type=int, default=2500, help="training steps per GMP variant")
    parser.add_argument("--word-steps", type=int, default=4000, help="training steps per BiLSTM/CNN student")
    parser.add_argument("--learning-rate", type=float, default=5e-5)
    parser.add_argument("--gmp-learning-rate", type=float, default=3e-5)
    parser.add_argument("--gmp-global-threshold", action="store_true",
                        help="gmp-90 / gmp-90-kd: one magnitude threshold across all pruned kernels (default: one "
                             "per kernel)")
    parser.add_argument("--teacher-cache", default=None, metavar="DIR",
                        help="gmp-90-kd: distil from this teacher-output cache (logits of --teacher on the task's "
                             "train set, e.g. a recipe's distill/teacher_cache) instead of the live teacher")
    parser.add_argument("--checkpoint-dir", default=None, metavar="DIR",
                        help="back up each variant's training under DIR/<variant> after every epoch; the same command "
                             "run again resumes a stopped run there (BackupAndRestore, pruning masks and step included)")
    parser.add_argument("--out", default=None, help="default benchmarks/results/<task>_distillation.json")
    parser.add_argument("--work", default=None, help="default runs/<task>-distillation")
    parser.add_argument("--notes", default=None, help="free text recorded as `notes` in --out")
    parser.add_argument("--runs", type=int, default=30, help="timed LiteRT runs per variant")
    parser.add_argument("--train-examples", type=int, default=None, help="use the first N train examples (smoke runs)")
    parser.add_argument("--variants", default=",".join(ALL), help=f"comma-separated subset of {CHOICES}")
    parser.add_argument("--step-timing", type=int, default=0, metavar="STEPS",
                        help="only time STEPS steps each of the 3-layer student: plain, KD with the live teacher, KD "
                             "from a teacher cache (same batches, back to back), into --out's step_timing")
    args = parser.parse_args(argv)
    args.teacher = args.teacher or f"runs/{args.task}-minilm-baseline/00_finetune/model.keras"
    args.out = args.out or f"benchmarks/results/{args.task}_distillation.json"
    args.work = args.work or f"runs/{args.task}-distillation"
    if args.step_timing:
        return step_timing(args)
    wanted = args.variants.split(",")
    unknown = sorted(set(wanted) - set(CHOICES))
    if unknown:
        parser.error(f"unknown variants {unknown}; choose from {CHOICES}")

    train = load_glue(args.task, "train", data_dir=args.data_dir)
    dev = load_glue(args.task, "dev", data_dir=args.data_dir)
    if args.train_examples:
        train = train.take(args.train_examples)
    os.makedirs(args.work, exist_ok=True)
    log(f"data: {len(train)} train, {len(dev)} dev; teacher {args.teacher}")
    teacher = load_model(args.teacher, compile=False)
    teacher.trainable = False
    features = encode(dev.texts, teacher.preprocessor)
    peak = latency.int8_peak_gmacs(num_threads=2)
    log(f"int8 peak {peak:.0f} GMAC/s")
    rows, steps_seconds = [], {}

    def measure(model, variant, tags, extra=None):
        rows.append(harness.measure_variant(model, variant, tags, None if variant == "baseline" else "baseline",
                                            dev, args.work, peak, runs=args.runs, features=features, extra=extra))
        harness.write_results(args.out, f"{args.task}_distillation", command_line(), rows, peak,
                              extra={"data": dev.source, "teacher": args.teacher, "steps_per_student": args.steps,
                                     "steps_per_gmp_variant": args.gmp_steps, "step_seconds": steps_seconds,
                                     **({"notes": args.notes} if args.notes else {})})

    def tune(variant, model, steps, learning_rate, config=None, callbacks=(), source=None):
        # Exactly `steps` steps, even beyond one epoch (finetune's max_steps caps each epoch).
        epochs, cap = step_budget(len(train), steps)
        timer = StepTimer()
        checkpoint_dir = os.path.join(args.checkpoint_dir, variant) if args.checkpoint_dir else None
        history = finetune(model, train, None, epochs=epochs, batch_size=32, learning_rate=learning_rate,
                           max_steps=cap, callbacks=[*callbacks, timer], verbose=2, checkpoint_dir=checkpoint_dir,
                           teacher=(source or teacher) if config is not None else None, distillation=config)
        steps_seconds[variant] = round(timer.median, 4)
        ran = epochs * min(cap, steps_per_epoch(len(train), 32))
        return {"train_seconds": round(history.history["train_seconds"][0], 1), "steps": ran,
                **({"epochs": epochs} if epochs > 1 else {}),
                "learning_rate": learning_rate, **({"distillation": config.get_config()} if config else {})}

    measure(teacher, "baseline", ["baseline", "teacher", "finetune"])
    cache = None
    for variant in wanted:
        log(f"{variant}: start")
        if variant in WORD_STUDENTS:
            if cache is None:
                started = time.time()
                cache = cache_teacher_outputs(teacher, train, os.path.join(args.work, "teacher_cache"),
                                              overwrite=True)
                steps_seconds["teacher_cache_seconds"] = round(time.time() - started, 1)
            kind, siamese = variant.split("-")[0], variant.endswith("-siamese")
            make = bilstm_student if kind == "bilstm" else cnn_student
            student = make(teacher, siamese=siamese)
            extra = tune(variant, student, args.word_steps, 1e-3, TANG, source=cache)
            described = "BiLSTM 150x2 + dense 400" if kind == "bilstm" else "CNN 3x100 filters (3, 4, 5)"
            if siamese:
                described += ", siamese over the two sentences: [a, b, a*b, |a-b|]"
            measure(student, variant, ["distill", "logits-kd", kind] + (["siamese"] if siamese else []),
                    {**extra, "student": described, "teacher_cache": True})
        elif variant.startswith("student-3l"):
            student = student_from_teacher(teacher, "every_other")
            student.trainable = True
            config = {"student-3l-kd": KD, "student-3l-hard": None, "student-3l-tinybert": TINYBERT,
                      "student-3l-pkd": PKD}[variant]
            extra = tune(variant, student, args.steps, args.learning_rate, config)
            tags = {"student-3l-kd": ["distill", "logits-kd", "layers"],
                    "student-3l-hard": ["finetune", "layers"],
                    "student-3l-tinybert": ["distill", "logits-kd", "hidden-kd", "attention-kd", "layers"],
                    "student-3l-pkd": ["distill", "logits-kd", "pkd", "layers"]}[variant]
            measure(student, variant, tags, {**extra, "student": "teacher layers 1,3,5 of 6 (every_other)"})
        else:
            model = load_model(args.teacher, compile=False)
            model.trainable = True
            end = int(args.gmp_steps * 0.7)
            prune_low_magnitude(model, PolynomialDecay(0.0, 0.9, begin_step=0, end_step=end,
                                                       frequency=max(1, end // 20)),
                                global_threshold=args.gmp_global_threshold)
            config = KD if variant == "gmp-90-kd" else None
            source = TeacherCache(args.teacher_cache) if config is not None and args.teacher_cache else None
            extra = tune(variant, model, args.gmp_steps, args.gmp_learning_rate, config, [UpdatePruningStep()],
                         source=source)
            if source is not None:
                extra["teacher_cache"] = True
            extra["sparsity"] = round(get_pruning(model).overall_sparsity(), 4)
            extra["threshold"] = "global" if args.gmp_global_threshold else "per kernel"
            strip_pruning(model)
            tags = ["gmp", "unstructured"] + (["distill", "logits-kd"] if config else [])
            measure(model, variant, tags, extra)
        log(f"{variant}: {rows[-1]['keras_score']}")
    print(harness.markdown_table(rows), flush=True)
    return 0


def step_timing(args) -> int:
    """Median step seconds of the every-other-layer student: hard labels only, logits KD with the live teacher, and
    logits KD read from `cache_teacher_outputs` (issue 5's cached step vs plain step)."""
    import json
    import tempfile

    steps = args.step_timing
    train = load_glue(args.task, "train", data_dir=args.data_dir).take(32 * (steps + 5))
    teacher = load_model(args.teacher, compile=False)
    teacher.trainable = False
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        started = time.time()
        cache = cache_teacher_outputs(teacher, train, os.path.join(tmp, "cache"), verbose=0)
        seconds["cache_build_seconds"] = round(time.time() - started, 1)
        for kind, config, source in (("plain", None, None), ("live_teacher", KD, teacher), ("cached", KD, cache)):
            student = student_from_teacher(teacher, "every_other")
            student.trainable = True
            timer = StepTimer()
            finetune(student, train, None, epochs=1, batch_size=32, learning_rate=args.learning_rate,
                     max_steps=steps, callbacks=[timer], verbose=2, length_grouping=1,
                     teacher=source, distillation=config)
            seconds[kind] = round(timer.median, 4)
            log(f"{kind}: {seconds[kind]} s/step")
    seconds["live_over_plain"] = round(seconds["live_teacher"] / seconds["plain"], 3)
    seconds["cached_over_plain"] = round(seconds["cached"] / seconds["plain"], 3)
    seconds["timed"] = f"{steps} steps each (first 20 skipped), batch 32, same batches, back to back"
    with open(args.out) as f:
        doc = json.load(f)
    doc["step_timing"] = seconds
    with open(args.out, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    log(f"step timing: {seconds}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
