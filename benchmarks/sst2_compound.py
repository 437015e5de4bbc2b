"""SST-2 compound recipe (recipes/sst2_compound.yaml: heads + FFN neurons halved by importance with a physical
shrink, one recovery epoch, int8) run end to end, then measured beside the uncompressed fine-tuned teacher in the
same process (float32 and dynamic-range int8 of both; full-integer int8 of the compressed model for comparison).
Every file is verified against its Keras model on the full SST-2 dev set and timed at batch 1, sequence 128.

    python benchmarks/sst2_compound.py --data-dir ../shared/data/glue

The same on MiniLM-L3 (the teacher from recipes/sst2_minilm_l3.yaml; the results file names the benchmark):

    python benchmarks/sst2_compound.py --recipe recipes/sst2_minilm_l3_compound.yaml \
        --work runs/sst2-minilm-l3-compound --out benchmarks/results/sst2_minilm_l3_compound.json
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from tfbertopt.bench import harness, latency  # noqa: E402
from tfbertopt.bench.harness import command_line  # noqa: E402
from tfbertopt.data.glue import load_glue  # noqa: E402
from tfbertopt.data.pipeline import encode  # noqa: E402
from tfbertopt.recipe import load_recipe  # noqa: E402
from tfbertopt.runner import run_recipe  # noqa: E402
from tfbertopt.saving import load_model  # noqa: E402


def log(message: str) -> None:
    print(f"[{os.path.basename(__file__)} {time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", default="recipes/sst2_compound.yaml")
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--work", default="runs/sst2-compound")
    parser.add_argument("--out", default="benchmarks/results/sst2_compound.json")
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, as `tfbertopt run --set`")
    args = parser.parse_args(argv)
    name = os.path.splitext(os.path.basename(args.out))[0]

    recipe = load_recipe(args.recipe, [f"data.dir={args.data_dir}", *args.set])
    # Exports and timings happen below, beside the teacher; the recipe's own export/benchmark stages are skipped.
    recipe["stages"] = [s for s in recipe["stages"] if next(iter(s)) not in ("export", "benchmark")]
    run = run_recipe(recipe, args.work)
    teacher = load_model(recipe["model"], compile=False)
    compressed = run.model
    train = load_glue("sst2", "train", data_dir=args.data_dir)
    dev = load_glue("sst2", "dev", data_dir=args.data_dir)
    calibration = train._select(np.random.default_rng(0).permutation(len(train))[:1000])
    features = encode(dev.texts, teacher.preprocessor)
    peak = latency.int8_peak_gmacs(num_threads=2)
    bench_dir = os.path.join(args.work, "bench")
    rows = []
    for model, variant, tags, q in [
            (teacher, "baseline", ["baseline", "teacher", "finetune"], "float32"),
            (teacher, "baseline-int8", ["ptq-dynamic"], "dynamic"),
            (compressed, "heads-ffn-shrink", ["recipe", "heads", "ffn", "structured"], "float32"),
            (compressed, "compound", ["recipe", "compound", "heads", "ffn", "structured", "ptq-dynamic"], "dynamic"),
            (compressed, "compound-full-int8", ["recipe", "heads", "ffn", "structured", "ptq-int8"], "int8")]:
        log(f"{variant}: {q}")
        rows.append(harness.measure_variant(model, variant, tags, None if variant == "baseline" else "baseline", dev,
                                            bench_dir, peak, quantization=q, runs=args.runs, features=features,
                                            calibration=calibration if q == "int8" else None))
        harness.write_results(args.out, name, command_line(), rows, peak,
                              extra={"data": dev.source, "recipe": args.recipe, "teacher": recipe["model"]})
    print(harness.markdown_table(rows), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
