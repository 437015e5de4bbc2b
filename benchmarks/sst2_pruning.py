"""SST-2 pruning benchmark: every pruning method against the unpruned fine-tuned teacher, in one run.

Starts from the fine-tuned MiniLM-L6 teacher written by `tfbertopt run recipes/sst2_minilm_baseline.yaml`
(runs/sst2-minilm-baseline/00_finetune/model.keras). Every variant gets the same fine-tuning budget (`--steps`
steps of batch 32 over real SST-2 train) and is measured on the full SST-2 dev set, exported to LiteRT float32
(unstructured sparsity does not change LiteRT dense kernels' speed; structured variants are physically smaller), verified
against Keras and timed at batch 1, sequence 128, 2 and 1 threads.

    python benchmarks/sst2_pruning.py --data-dir ../shared/data/glue

Variants: baseline (teacher); continued (the teacher fine-tuned for the same budget without pruning: the control
that separates the effect of pruning from that of more fine-tuning); gmp-50/70/80/90 (polynomial-decay magnitude pruning of attention + FFN kernels);
nm-2:4; heads-ffn-50 (Michel importance, 50% of heads and FFN neurons removed, shrunk, recovered); drop-4-6
(layers 4 and 6 of 6 dropped from the teacher); layerdrop-drop-4-6 (LayerDrop p=0.2 fine-tuning, then layers 4 and 6
dropped: Sajjad et al. / Fan et al.). `train_step_ratio` = step time of the variant's fine-tuning / plain step time.
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
from tfbertopt.data.pipeline import encode  # noqa: E402
from tfbertopt.pruning import (  # noqa: E402
    ConstantSparsity,
    PolynomialDecay,
    UpdatePruningStep,
    get_pruning,
    prune_low_magnitude,
    strip_pruning,
)
from tfbertopt.pruning.structured import (  # noqa: E402
    plan_by_importance,
    plan_drop_layers,
    shrink,
    structure_importance,
    with_layerdrop,
)
from tfbertopt.saving import load_model  # noqa: E402
from tfbertopt.train import evaluate, finetune  # noqa: E402


def log(message: str) -> None:
    print(f"[sst2_pruning {time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="runs/sst2-minilm-baseline/00_finetune/model.keras")
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--steps", type=int, default=600, help="fine-tuning steps per variant")
    parser.add_argument("--learning-rate", type=float, default=3e-5)
    parser.add_argument("--out", default="benchmarks/results/sst2_pruning.json")
    parser.add_argument("--work", default="runs/sst2-pruning")
    parser.add_argument("--runs", type=int, default=30, help="timed LiteRT runs per variant")
    parser.add_argument("--variants", default="all", help="comma-separated subset, e.g. gmp-90,nm-2:4")
    parser.add_argument("--dev-examples", type=int, default=None)
    args = parser.parse_args(argv)

    train = load_glue("sst2", "train", data_dir=args.data_dir)
    dev = load_glue("sst2", "dev", data_dir=args.data_dir)
    if args.dev_examples:
        dev = dev.take(args.dev_examples)
    os.makedirs(args.work, exist_ok=True)
    log(f"data: {len(train)} train, {len(dev)} dev; teacher {args.teacher}")
    teacher = load_model(args.teacher)
    features = encode(dev.texts, teacher.preprocessor)
    peak = latency.int8_peak_gmacs(num_threads=2)
    log(f"int8 peak {peak:.0f} GMAC/s")

    def measure(model, variant, tags, extra=None):
        return harness.measure_variant(model, variant, tags, None if variant == "baseline" else "baseline", dev,
                                       args.work, peak, runs=args.runs, features=features, extra=extra)

    def tune(model, callbacks=(), steps=args.steps):
        timer = StepTimer()
        finetune(model, train, None, epochs=1, batch_size=32, learning_rate=args.learning_rate, max_steps=steps,
                 callbacks=[*callbacks, timer], verbose=0)
        return timer.median

    wanted = None if args.variants == "all" else set(args.variants.split(","))
    rows = [measure(teacher, "baseline", ["baseline", "teacher", "finetune"])]
    # The plain step time comes from the same budget on the same batches without pruning, so ratios compare
    # like with like (the median over the whole run).
    log("continued: the teacher fine-tuned for the same budget without pruning (the control for every row)")
    model = load_model(args.teacher)
    plain_step = tune(model)
    log(f"plain step {plain_step:.3f} s")
    if not wanted or "continued" in wanted:
        rows.append(measure(model, "continued", ["finetune"], {"train_step_ratio": 1.0}))

    for target in (0.5, 0.7, 0.8, 0.9):
        variant = f"gmp-{int(target * 100)}"
        if wanted and variant not in wanted:
            continue
        log(f"{variant}: polynomial decay to {target} over {int(args.steps * 0.7)} steps")
        model = load_model(args.teacher)
        end = int(args.steps * 0.7)
        prune_low_magnitude(model, PolynomialDecay(0.0, target, begin_step=0, end_step=end,
                                                   frequency=max(1, end // 20)))
        step = tune(model, [UpdatePruningStep()])
        sparsity = get_pruning(model).overall_sparsity()
        strip_pruning(model)
        rows.append(measure(model, variant, ["gmp", "unstructured"],
                            {"sparsity": round(sparsity, 4), "train_step_ratio": round(step / plain_step, 3)}))

    if not wanted or "nm-2:4" in wanted:
        log("nm-2:4: 2 of every 4 input weights of attention + FFN kernels")
        model = load_model(args.teacher)
        prune_low_magnitude(model, ConstantSparsity(0.5, 0, frequency=10 ** 9), sparsity_m_by_n=(2, 4))
        step = tune(model, [UpdatePruningStep()])
        sparsity = get_pruning(model).overall_sparsity()
        strip_pruning(model)
        rows.append(measure(model, "nm-2:4", ["n:m"],
                            {"sparsity": round(sparsity, 4), "train_step_ratio": round(step / plain_step, 3)}))

    if not wanted or "heads-ffn-50" in wanted:
        log("heads-ffn-50: importance, shrink, recover")
        model = load_model(args.teacher)
        train_features = encode(train.texts[:2048], model.preprocessor)
        scores = structure_importance(model, train_features, train.labels[:2048], train.task, batches=32)
        plan = plan_by_importance(model, scores, head_fraction=0.5, neuron_fraction=0.5)
        log(plan.summary(model))
        small = shrink(model, plan)
        before = evaluate(small, dev, features=features)["accuracy"]
        step = tune(small)
        rows.append(measure(small, "heads-ffn-50", ["heads", "ffn", "shrink"],
                            {"dev_before_recovery": round(before, 4), "plan": plan.summary(model),
                             "train_step_ratio": round(step / plain_step, 3)}))

    if not wanted or "drop-4-6" in wanted:
        log("drop-4-6: layers 4 and 6 dropped from the teacher, no training")
        model = load_model(args.teacher)
        rows.append(measure(shrink(model, plan_drop_layers(model, [4, 6])), "drop-4-6", ["layers", "shrink"]))

    if not wanted or "layerdrop-drop-4-6" in wanted:
        log("layerdrop-drop-4-6: LayerDrop p=0.2 fine-tuning, then layers 4 and 6 dropped")
        model = with_layerdrop(load_model(args.teacher), 0.2)
        step = tune(model)
        small = shrink(model, plan_drop_layers(model, [4, 6]))
        rows.append(measure(small, "layerdrop-drop-4-6", ["layerdrop", "layers", "shrink"],
                            {"train_step_ratio": round(step / plain_step, 3)}))

    doc = harness.write_results(args.out, "sst2_pruning", command_line(), rows, peak,
                                extra={"data": dev.source, "teacher": args.teacher, "steps_per_variant": args.steps,
                                       "plain_step_seconds": round(plain_step, 4)})
    print(harness.markdown_table(doc["rows"]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
