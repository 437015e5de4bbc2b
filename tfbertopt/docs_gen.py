"""The generated parts of the documentation: the README's headline results table and the recipe reference.

Each generated part sits in a markdown file between two marker comments::

    <!-- generated: headline-table -->
    ...
    <!-- end generated -->

`python -m tfbertopt.docs_gen` (or `tfbertopt docs`) rewrites every such block in README.md and docs/recipes.md
from the sources; `--check` only says which blocks are stale (exit status 1), as `tests/test_docs.py` does.

- `headline-table` (README.md): chosen rows (`HEADLINE`) of the committed results files in `benchmarks/results/`,
  each against the baseline row of its own file. A missing file or variant is an error naming both.
- `recipe-reference` (docs/recipes.md): the recipe's top-level, `data` and `distribute` keys (`tfbertopt.recipe.TOP_LEVEL`, `DATA`, `DISTRIBUTE`)
  and every option of every stage in the registry `tfbertopt.stages.STAGES` (each stage object's `options` and
  `allowed`): default, type or allowed values, description.
- `recipe-list` (docs/recipes.md): every recipe in `recipes/`, its model and stages, and a one-line summary from
  `RECIPE_SUMMARIES` (a recipe without one, or a summary without a recipe, is an error).

Example:

>>> from tfbertopt.docs_gen import replace_blocks
>>> text = "intro\\n<!-- generated: x -->\\nold\\n<!-- end generated -->\\nend\\n"
>>> print(replace_blocks(text, {"x": "new"}, "demo.md"), end="")
intro
<!-- generated: x -->
new
<!-- end generated -->
end
>>> replace_blocks(text, {"y": "new"}, "demo.md")
Traceback (most recent call last):
...
tfbertopt.docs_gen.DocsError: demo.md: no '<!-- generated: y -->' marker
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

import yaml

from tfbertopt import recipe
from tfbertopt.stages import STAGES

REPO = Path(__file__).resolve().parent.parent
END = "<!-- end generated -->"

# The README's headline table: (label, results file in benchmarks/results/, variant), in table order.
HEADLINE = (
    ("float32 (fine-tuned MiniLM-L6: the teacher)", "sst2_foundation.json", "float32"),
    ("dynamic-range int8", "sst2_foundation.json", "dynamic"),
    ("int8-matmul (PTQ, per-channel output scales)", "sst2_int8_speed.json", "ptq-int8-matmul"),
    ("int8-matmul after QAT", "sst2_qat_int8_matmul.json", "qat-int8-matmul"),
    ("full-integer int8 (PTQ)", "sst2_int8_speed.json", "ptq-int8"),
    ("half the heads + FFN neurons removed, shrunk", "sst2_pruning.json", "heads-ffn-50"),
    ("GMP to 90% sparsity + KD, 10 epochs", "sst2_gmp90_10ep.json", "gmp-90-kd"),
    ("3-layer student, logits KD", "sst2_distillation.json", "student-3l-kd"),
    ("Kim CNN word student, cached teacher logits", "sst2_distillation_word.json", "cnn"),
    ("embeddings E=112 (SVD) + KD + dynamic int8", "sst2_embedding_factorization_2ep.json",
     "embedding-factorized-int8"),
    ("compound: heads + FFN shrink + dynamic int8", "sst2_compound.json", "compound"),
    ("compound-10x: LayerDrop, 2 layers dropped, shrink, E=128, KD, dynamic int8", "sst2_compound_10x.json",
     "compound"),
    ("int4 kernels and tables after 200 steps of QAT", "sst2_int4_qat.json", "qat-int4"),
    ("compound-trimmed: compound-10x + 16,000-piece vocabulary + QAT, int8 kernels, int4 tables",
     "sst2_compound_trimmed_qat.json", "compound-trimmed-qat-dynamic-int4-tables"),
    ("the same recipe rerun, keeping the best distillation epoch", "sst2_compound_trimmed_best.json",
     "compound-trimmed-qat-dynamic-int4-tables"),
    ("compound-trimmed, distilled over teacher-labelled augmented text", "sst2_compound_trimmed_augmented.json",
     "compound-trimmed-qat-dynamic-int4-tables"),
    ("the augmented student cut to two layers, distilled 3 more epochs, trimmed, QAT",
     "sst2_compound_trimmed_2layer_long.json", "compound-trimmed-qat-dynamic-int4-tables"),
    ("compound-trimmed, two epochs over the augmented text", "sst2_compound_trimmed_augmented_long.json",
     "compound-trimmed-qat-dynamic-int4-tables"),
    ("compound, full vocabulary, int4 kernels and tables with learned scales, distilled two epochs as int4",
     "sst2_compound_int4_learned_long.json", "compound-qat-int4"),
)

# One line per recipe in recipes/ (docs/recipes.md); keep in step with the folder (the generator checks).
RECIPE_SUMMARIES = {
    "demo.yaml": "offline demo: a tiny random BERT on synthetic data; fine-tune, export, verify, time",
    "demo_families.yaml": "offline demo for any family (--set model=demo-<family>): fine-tune, shrink, SVD, "
                          "int8-matmul QAT and export",
    "mrpc_bilstm_siamese.yaml": "Tang et al.'s siamese BiLSTM on MRPC sentence pairs, from cached teacher logits",
    "mrpc_compound_int4_even.yaml": "MRPC's compound float student with every FFN width rounded to an even count "
                                    "(neuron_multiple: 2), int4 beside int8",
    "mrpc_minilm_baseline.yaml": "MiniLM-L6 fine-tuned on MRPC; float32 / float16 / dynamic int8",
    "sst2_albert_factorize.yaml": "ALBERT's ideas: E=128 factorized embeddings + layers shared in pairs, "
                                  "distilled recovery",
    "sst2_bilstm_tang.yaml": "Tang et al.'s BiLSTM student over the teacher's word embeddings, logits MSE",
    "sst2_compound.yaml": "half the heads and FFN neurons removed and shrunk, recovery, dynamic int8",
    "sst2_compound_10x.yaml": "LayerDrop, layers 4 and 6 dropped, heads/FFN shrink, E=128, cached-teacher KD, "
                              "dynamic int8",
    "sst2_compound_int4.yaml": "the two-epoch augmented compound student with its full vocabulary, QAT for int4 "
                               "kernels and tables (distilled from the float student)",
    "sst2_compound_int4_distilled.yaml": "compound-int4 with its int4 fake-quant twin trained by one more epoch of "
                                         "the augmented distillation from the teacher (qat epochs: 0, then distill)",
    "sst2_compound_int4_learned.yaml": "compound-int4-distilled with learned per-channel int4 scales (LSQ from the "
                                       "least-squares clip)",
    "sst2_compound_int4_learned_long.yaml": "compound-int4-learned with two quantization-aware distillation epochs "
                                            "at 5e-5 instead of one at 2e-5",
    "sst2_compound_trimmed.yaml": "compound-10x, vocabulary trimmed to 16,000 WordPieces, QAT of int8 kernels and "
                                  "int4 tables (dynamic-int4-tables)",
    "sst2_compound_trimmed_augmented.yaml": "compound-trimmed with TinyBERT-style augmented text in the distillation "
                                            "(two teacher-labelled copies per sentence)",
    "sst2_compound_trimmed_augmented_long.yaml": "the augmented compound-trimmed recipe with two epochs of its "
                                                 "distillation instead of one",
    "sst2_compound_trimmed_first.yaml": "the two-epoch augmented compound-trimmed recipe with the vocabulary "
                                        "trimmed before the distillation (the student trains on its own splits)",
    "sst2_compound_trimmed_2layer.yaml": "the augmented compound-trimmed student cut to its last two layers, "
                                         "distilled again, trimmed, QAT for int8 kernels and int4 tables",
    "sst2_compound_trimmed_2layer_long.yaml": "the two-layer compound-trimmed recipe with three epochs of its "
                                              "second distillation instead of one",
    "sst2_compound_trimmed_2layer_hidden.yaml": "the three-epoch two-layer student, one more distillation epoch with "
                                                "hidden-state cosine loss, trimmed, dynamic int8",
    "sst2_compound_trimmed_2layer_wide.yaml": "a two-layer student cut before heads and FFN neurons are ranked "
                                              "(twice the width of the 2layer recipes), distilled over augmented "
                                              "text, trimmed, QAT",
    "sst2_distilbert_style.yaml": "DistilBERT-style student (every other layer): KL + hard labels + hidden cosine",
    "sst2_embedding_factorize.yaml": "ALBERT-style token embeddings alone (E=112), two epochs of KD, dynamic int8",
    "sst2_gmp90.yaml": "gradual magnitude pruning to 90% of the attention and FFN weights",
    "sst2_heads_ffn_shrink.yaml": "Michel et al. head (and FFN neuron) importance, half removed, physical shrink",
    "sst2_int8_matmul.yaml": "post-training int8-matmul export (int8 matmuls, float elsewhere)",
    "sst2_layerdrop.yaml": "LayerDrop training, then layers 4 and 6 dropped",
    "sst2_minilm_baseline.yaml": "MiniLM-L6 fine-tuned on SST-2; float32 / float16 / dynamic int8 (the baseline)",
    "sst2_minilm_l3.yaml": "the second real checkpoint, MiniLM-L3 (converted from ONNX), fine-tuned on SST-2; "
                           "float32 / float16 / dynamic int8",
    "sst2_minilm_l3_compound.yaml": "the compound recipe (heads + FFN shrink, recovery, int8) on the fine-tuned "
                                    "MiniLM-L3",
    "sst2_pkd.yaml": "Patient KD, PKD-Skip: logits KL at T=10 + [CLS] MSE on every other layer",
    "sst2_q8bert_qat.yaml": "Q8BERT-style quantization-aware training, full-integer int8 export",
    "sst2_qat_int8_matmul.yaml": "quantization-aware training for the int8-matmul graph, then its export",
    "sst2_qbert_mixed.yaml": "Q-BERT-style mixed precision: the most int8-sensitive ops kept float",
    "sst2_tinybert_two_stage.yaml": "TinyBERT two-stage distillation into a 4-layer H312 student",
    "sst2_triple_compressed.yaml": "triple-compressed BERT: LayerDrop, layers 4 and 6 dropped, dynamic int8",
}


class DocsError(RuntimeError):
    """A generated block cannot be produced: a results file, variant, recipe or marker is missing."""


# ---------------------------------------------------------------------------------------------- headline table


def _load_results(results_dir: Path, name: str) -> dict:
    path = results_dir / name
    if not path.exists():
        raise DocsError(f"{path}: results file not found (listed in tfbertopt.docs_gen.HEADLINE)")
    with open(path) as f:
        return json.load(f)


def find_row(results_dir, name: str, variant: str) -> tuple[dict, dict]:
    """(row, its baseline row) of `variant` in results file `name`; the baseline row of a baseline is itself."""
    results_dir = Path(results_dir)
    rows = _load_results(results_dir, name).get("rows", [])
    by_variant = {r.get("variant"): r for r in rows}
    if variant not in by_variant:
        raise DocsError(f"{results_dir / name}: no row with variant '{variant}' (has: {', '.join(by_variant)})")
    row = by_variant[variant]
    base_name = row.get("baseline")
    if base_name is None:
        return row, row
    if base_name not in by_variant:
        raise DocsError(f"{results_dir / name}: row '{variant}' names baseline '{base_name}', which is not in the file")
    return row, by_variant[base_name]


def _need(row: dict, key: str, where: str):
    value = row.get(key)
    if value is None:
        raise DocsError(f"{where}: row '{row.get('variant')}' has no '{key}'")
    return value


def headline_table(results_dir=REPO / "benchmarks" / "results", rows=HEADLINE, link_prefix="benchmarks/results/") \
        -> str:
    """The README's results table: one line per (label, file, variant) in `rows`, from the .tflite rows."""
    head = ["variant", "SST-2 dev (.tflite)", "teacher", "vs teacher (points)", "MB", "x smaller",
            "ms (2 threads)", "x faster", "verified", "source"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for label, name, variant in rows:
        row, base = find_row(results_dir, name, variant)
        where = str(Path(results_dir) / name)
        score, base_score = _need(row, "tflite_score", where), _need(base, "tflite_score", where)
        mb, base_mb = _need(row, "tflite_mb", where), _need(base, "tflite_mb", where)
        ms, base_ms = _need(row, "latency_ms", where), _need(base, "latency_ms", where)
        is_base = row is base
        agreement = row.get("label_agreement")
        if row.get("verified") is False:
            verified = "no" + (f" ({agreement:.2%} agreement)" if agreement is not None else "")
        else:
            verified = "yes" if row.get("verified") else "—"
        cells = [
            label,
            f"{score:.4f}",
            f"{base_score:.4f}",
            "—" if is_base else f"{(score - base_score) * 100:+.2f}",
            f"{mb:.1f}",
            f"{base_mb / mb:.2f}",
            f"{ms:.2f}",
            f"{base_ms / ms:.2f}",
            verified,
            f"[{name}]({link_prefix}{name}) `{variant}`",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- recipe reference


def _yaml_value(value) -> str:
    """A schema default as it would be written in a recipe."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, dict)):
        return yaml.safe_dump(value, default_flow_style=True, width=10_000).strip()
    return str(value)


def _kind(kind, allowed=None) -> str:
    if allowed is not None:
        return allowed.replace("|", "\\|")
    if isinstance(kind, tuple):
        return " \\| ".join(map(str, kind))
    if kind is None:
        return "any (see description)"
    return {"int": "integer", "float": "number", "str": "string", "bool": "boolean", "list": "list",
            "dict": "mapping"}[kind.__name__]


def _option_table(schema: dict, allowed: dict | None = None) -> list[str]:
    allowed = allowed or {}
    lines = ["| option | default | type / allowed values | description |", "| --- | --- | --- | --- |"]
    for key, (default, kind, description) in schema.items():
        cells = [f"`{key}`", f"`{_yaml_value(default)}`", _kind(kind, allowed.get(key)),
                 description.replace("|", "\\|").replace("<", "&lt;").replace(">", "&gt;")]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def recipe_reference() -> str:
    """Markdown reference of the recipe schema: top-level keys, `data`, then each stage's options."""
    out = ["### Top-level keys", "",
           f"Required: {', '.join(f'`{k}`' for k in recipe.REQUIRED)}.", ""]
    out += _option_table(recipe.TOP_LEVEL)
    out += ["", "### `data`", ""]
    out += _option_table(recipe.DATA)
    out += ["", "### `distribute`", ""]
    out += _option_table(recipe.DISTRIBUTE)
    for name, stage in STAGES.items():
        out += ["", f"### Stage `{name}`", ""]
        out += _option_table(stage.options, stage.allowed)
    return "\n".join(out)


def _stage_summary(stage) -> str:
    if isinstance(stage, str):
        return stage
    (name, options), = stage.items()
    options = options or {}
    if name == "export" and "quantization" in options:
        return f"export ({', '.join(options['quantization'])})"
    if name == "qat" and "target" in options:
        return f"qat ({options['target']})"
    return name


def recipe_list(recipes_dir=REPO / "recipes", link_prefix="../recipes/") -> str:
    """Markdown table of the recipes in `recipes_dir`: file, model, stages, one-line summary."""
    recipes_dir = Path(recipes_dir)
    files = sorted(p.name for p in recipes_dir.glob("*.yaml"))
    missing = [f for f in files if f not in RECIPE_SUMMARIES]
    if missing:
        raise DocsError(f"{recipes_dir / missing[0]}: no one-line summary in tfbertopt.docs_gen.RECIPE_SUMMARIES")
    gone = [f for f in RECIPE_SUMMARIES if f not in files]
    if gone:
        raise DocsError(f"{recipes_dir / gone[0]}: in tfbertopt.docs_gen.RECIPE_SUMMARIES but not a recipe file")
    lines = ["| recipe | model | stages | what it does |", "| --- | --- | --- | --- |"]
    for name in files:
        raw = yaml.safe_load((recipes_dir / name).read_text(encoding="utf-8"))
        stages = " → ".join(_stage_summary(s) for s in raw.get("stages", []))
        lines.append(f"| [{name}]({link_prefix}{name}) | `{raw.get('model')}` | {stages} | "
                     f"{RECIPE_SUMMARIES[name]} |")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------- blocks in files


def replace_blocks(text: str, blocks: dict[str, str], where: str = "") -> str:
    """`text` with the body of each `<!-- generated: NAME -->` ... `<!-- end generated -->` block replaced."""
    for name, body in blocks.items():
        start = f"<!-- generated: {name} -->"
        pattern = re.compile(re.escape(start) + r"\n.*?" + re.escape(END), re.S)
        if start not in text:
            raise DocsError(f"{where}: no '{start}' marker")
        if not pattern.search(text):
            raise DocsError(f"{where}: '{start}' has no '{END}' after it")
        text = pattern.sub(lambda _: f"{start}\n{body.rstrip()}\n{END}", text, count=1)
    return text


def generated_files(root=REPO) -> dict[Path, dict[str, str]]:
    """Each file with generated blocks, and the blocks' current bodies."""
    root = Path(root)
    return {
        root / "README.md": {"headline-table": headline_table(root / "benchmarks" / "results")},
        root / "docs" / "recipes.md": {"recipe-reference": recipe_reference(),
                                       "recipe-list": recipe_list(root / "recipes")},
    }


def render(root=REPO) -> dict[Path, tuple[str, str]]:
    """{path: (text now, text with the generated blocks up to date)}."""
    out = {}
    for path, blocks in generated_files(root).items():
        text = path.read_text(encoding="utf-8")
        out[path] = (text, replace_blocks(text, blocks, str(path)))
    return out


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tfbertopt.docs_gen", description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default=str(REPO), help="repository root (default: this checkout)")
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 if a generated block is stale")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")   # the recipe reference imports TensorFlow via keras
    try:
        rendered = render(args.root)
    except DocsError as e:
        print(f"docs_gen: error: {e}", file=sys.stderr)
        return 2
    stale = [path for path, (old, new) in rendered.items() if old != new]
    for path in stale:
        if args.check:
            print(f"stale: {path}")
        else:
            path.write_text(rendered[path][1], encoding="utf-8")
            print(f"updated: {path}")
    if not stale:
        print("generated blocks up to date")
    return 1 if stale and args.check else 0


if __name__ == "__main__":
    sys.exit(main())
