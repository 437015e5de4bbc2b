"""Recipe files: a model, a task and its data, and ordered stages, validated before anything runs.

```yaml
name: sst2-minilm-baseline
model: minilm-l6            # alias | keras-hub preset | local folder | .keras file | "demo"
task: sst2
data: {dir: path/to/glue}          # or {source: tfds}, or {source: demo}
sequence_length: 128
stages:
  - finetune: {epochs: 2, learning_rate: 5.0e-5}
  - export: {quantization: [float32, float16, dynamic]}
  - benchmark: {results: benchmarks/results/sst2_foundation.json}
```

Errors name the key path (`stages[1].export.quantization`) and suggest the closest known name. Files are read with
`yaml.safe_load` only.

Example:

>>> from tfbertopt.recipe import parse_recipe
>>> r = parse_recipe({"name": "x", "model": "demo", "task": "sst2", "data": {"source": "demo"},
...                   "stages": [{"finetune": {"epochs": 1}}]})
>>> r["stages"][0]["finetune"]["batch_size"]
32
>>> parse_recipe({"name": "x", "model": "demo", "task": "sst2", "stages": [{"finetun": {}}]})
Traceback (most recent call last):
...
tfbertopt.recipe.RecipeError: stages[0]: unknown stage 'finetun' (did you mean 'finetune'?); known stages: finetune, prune, structured_prune, layerdrop, factorize, distill, qat, export, benchmark

A `distill` stage trains a student from a teacher with `tfbertopt.distillation.Distiller` (see `DISTILL_STUDENTS`):

>>> r = parse_recipe({"name": "x", "model": "demo", "task": "sst2", "data": {"source": "demo"}, "stages": [
...     {"finetune": {}}, {"distill": {"student": "bilstm", "student_options": {"units": 64},
...                                    "distillation": {"hard_label_weight": 0, "logits": "mse"}}}]})
>>> r["stages"][1]["distill"]["teacher"], r["stages"][1]["distill"]["distillation"]["logits_weight"]
('previous', 0.5)
>>> parse_recipe({"name": "x", "model": "demo", "task": "sst2", "stages": [
...     {"distill": {"student": "bilstm", "distillation": {"hidden": "mse", "hidden_weight": 1.0}}}]})
Traceback (most recent call last):
...
tfbertopt.recipe.RecipeError: stages[0].distill.distillation: the bilstm student is not a transformer: the ['hidden'] terms compare per-layer transformer states it does not have; use the logits and hard-label terms (Tang et al.: logits: mse)
"""

from __future__ import annotations

import copy
import difflib
import os

import yaml

from tfbertopt.data.tasks import get_task
from tfbertopt.distillation.config import DistillationConfig
from tfbertopt.quantizers.config import POINTS, TARGETS
from tfbertopt.quantizers.modes import names



class RecipeError(ValueError):
    """A malformed recipe; the message starts with the key path of the problem."""


# Each option: (default, type or tuple of allowed values, description).
STAGES = {
    "finetune": {
        "epochs": (2, int, "passes over the training data"),
        "batch_size": (32, int, "examples per step"),
        "learning_rate": (5e-5, float, "peak AdamW learning rate (linear warm-up, then linear decay)"),
        "weight_decay": (0.01, float, "AdamW weight decay (not on biases/LayerNorm)"),
        "warmup_fraction": (0.1, float, "share of steps spent warming up"),
        "max_steps": (None, int, "cap on steps per epoch"),
        "length_grouping": (20, int, "sort by length inside windows of N batches (1 = random batches)"),
    },
    "prune": {
        "final_sparsity": (0.8, float, "target sparsity of the selected kernels"),
        "initial_sparsity": (0.0, float, "sparsity at begin_step"),
        "schedule": ("polynomial", ("polynomial", "constant"), "polynomial decay (GMP) or constant"),
        "end_fraction": (0.7, float, "share of the stage's steps after which the sparsity stays at final"),
        "frequency": (None, int, "steps between mask updates (default: 1/20 of the pruning span)"),
        "m_by_n": (None, list, "[N, M], e.g. [2, 4]: N:M sparsity instead of magnitude ranking"),
        "global_threshold": (False, bool, "one magnitude threshold across kernels"),
        "roles": (["attention", "ffn"], list, "kernel roles to prune (see `tfbertopt kernels`)"),
        "epochs": (1, int, "fine-tuning epochs while pruning"),
        "batch_size": (32, int, "examples per step"),
        "learning_rate": (3e-5, float, "peak AdamW learning rate"),
        "max_steps": (None, int, "cap on steps per epoch"),
    },
    "structured_prune": {
        "head_fraction": (0.5, float, "share of attention heads to remove (least important first, across layers)"),
        "neuron_fraction": (0.5, float, "share of FFN neurons to remove"),
        "drop_layers": (None, list, "1-based encoder layers to remove as well, e.g. [4, 6]"),
        "importance_batches": (32, int, "batches used to score heads and neurons"),
        "recovery_epochs": (1, int, "fine-tuning epochs after the shrink (0: none)"),
        "batch_size": (32, int, "examples per step"),
        "learning_rate": (3e-5, float, "peak AdamW learning rate of the recovery"),
        "max_steps": (None, int, "cap on recovery steps per epoch"),
    },
    "layerdrop": {
        "rate": (0.2, float, "probability of skipping each encoder layer per training batch"),
        "drop_layers": ("every_other", None, "1-based layers to remove after training, or every_other"),
        "epochs": (1, int, "fine-tuning epochs with LayerDrop"),
        "batch_size": (32, int, "examples per step"),
        "learning_rate": (3e-5, float, "peak AdamW learning rate"),
        "max_steps": (None, int, "cap on steps per epoch"),
    },
    "factorize": {
        "embedding_dim": (None, int, "ALBERT-style token embedding: V x E table + E x H projection, SVD-initialised"),
        "rank": (None, int, "SVD: one rank for every selected kernel"),
        "energy": (None, float, "SVD: per kernel, the smallest rank keeping this share of squared singular values"),
        "param_fraction": (None, float, "SVD: global budget, the selected kernels keep this share of their weights"),
        "roles": (["attention", "ffn"], list, "kernel roles to factorize by SVD"),
        "share": (None, None, "cross-layer sharing: all | pairs | a group size | [[0-based layers], ...]"),
        "share_parts": (["attention", "ffn"], list, "what the shared layers share: attention and ffn (whole layers), "
                                                    "or only one of them"),
        "share_init": ("average", ("average", "first"), "shared weights start from the group average or its first "
                                                         "layer"),
        "recovery_epochs": (1, int, "fine-tuning epochs after factorizing (0: none)"),
        "distill_recovery": (False, bool, "recover by distilling from the model before factorization (KL on logits "
                                          "+ hard labels) instead of plain fine-tuning"),
        "batch_size": (32, int, "examples per step"),
        "learning_rate": (5e-5, float, "peak AdamW learning rate of the recovery"),
        "max_steps": (None, int, "cap on recovery steps per epoch"),
    },
    "distill": {
        "teacher": ("previous", str, "previous (the model the previous stage produced; the recipe's model for a "
                                     "first stage), stage:N (the model earlier stage N, 0-based, saved), or a model "
                                     "source (.keras file, preset, folder)"),
        "student": ("every_other", None, "every_other | [0-based teacher layers] | {hidden_dim, num_layers, "
                                         "num_heads, intermediate_dim} (narrow) | bilstm | cnn | previous"),
        "student_options": ({}, dict, "bilstm: units, hidden_units, projection_dim, trainable_embeddings, dropout, "
                                      "siamese; cnn: filters, kernel_sizes, hidden_units, projection_dim, siamese, "
                                      "trainable_embeddings, dropout; narrow: dropout"),
        "distillation": ({}, dict, "DistillationConfig fields: hard_label_weight, logits, logits_weight, "
                                   "temperature, hidden, hidden_weight, attention, attention_weight, "
                                   "embedding_weight, cls_weight, layer_map"),
        "epochs": (3, int, "passes over the training data"),
        "batch_size": (32, int, "examples per step"),
        "learning_rate": (5e-5, float, "peak AdamW learning rate (linear warm-up, then linear decay)"),
        "weight_decay": (0.01, float, "AdamW weight decay (not on biases/LayerNorm)"),
        "warmup_fraction": (0.1, float, "share of steps spent warming up"),
        "max_steps": (None, int, "cap on steps per epoch"),
        "length_grouping": (20, int, "sort by length inside windows of N batches (1 = random batches)"),
        "cache": (False, bool, "run the teacher once over the training data, keep the outputs the loss terms need "
                               "on disk and train from them"),
        "cache_max_bytes": (1_000_000_000, int, "refuse a teacher cache larger than this"),
    },
    "qat": {
        "target": ("int8", str, "the LiteRT graph trained for (and the export it takes): int8 (full integer) or "
                                "int8-matmul (int8 matmuls with per-channel output scales where the channels "
                                "spread, float elsewhere)"),
        "points": (None, list, "activations that carry an int8 fake-quant (see "
                               "tfbertopt.quantization.QuantizationConfig); default: the target's"),
        "symmetric_activations": (False, bool, "symmetric activation ranges (Q8BERT) instead of LiteRT's asymmetric"),
        "ema_decay": (0.99, float, "decay of the moving averages of activation min/max"),
        "calibration_steps": (100, int, "training examples whose min/max start the activation ranges"),
        "distill": (False, bool, "add the float model's logits as a teacher (0.5 hard labels + 0.5 KL at T=2)"),
        "epochs": (1, int, "quantization-aware fine-tuning epochs"),
        "batch_size": (32, int, "examples per step"),
        "learning_rate": (2e-5, float, "peak AdamW learning rate"),
        "max_steps": (None, int, "cap on steps per epoch"),
    },
    "export": {
        "quantization": (["float32", "float16", "dynamic"], list,
                         "LiteRT variants: float32, float16, dynamic, int8 (full integer, calibrated on training "
                         "examples; after a qat stage its ranges come from training), int8-matmul (int8 matmuls with "
                         "per-channel output scales, float elsewhere; calibrated, or after a qat stage with target "
                         "int8-matmul from training), mixed (int8 with the most "
                         "sensitive ops float, Q-BERT style)"),
        "calibration_steps": (100, int, "training examples that calibrate an int8 (or mixed) export"),
        "mixed_max_float_ops": (40, int, "mixed: Q-BERT-style budget, at most this many ops kept float (the most "
                                         "sensitive groups, measured on training examples)"),
        "mixed_holdout": (200, int, "mixed: training examples the sensitivity is measured on"),
        "sequence_length": (None, int, "fixed input length (default: the recipe's sequence_length)"),
        "verify_examples": (None, int, "verify each file on the first N dev examples (default: all)"),
        "min_agreement": (0.995, float, "quantized exports must agree with Keras on this share of labels"),
        "max_logit_diff": (1e-4, float, "float exports must match Keras logits this closely"),
        "force": (False, bool, "write files that fail verification anyway (their report says FAILED)"),
    },
    "benchmark": {
        "results": (None, str, "also write the BENCHMARKS.md JSON here"),
        "latency_runs": (30, int, "timed LiteRT invocations per variant (median reported)"),
        "threads": ([2, 1], list, "LiteRT thread counts to time"),
    },
}
QUANTIZATION_CHOICES = names(recipe=True)
TOP_LEVEL = {
    "name": (None, str, "recipe name (output folder name)"),
    "model": (None, str, "model source"),
    "task": (None, str, "GLUE task"),
    "data": ({}, dict, "data source"),
    "sequence_length": (128, int, "preprocessor sequence length"),
    "seed": (0, int, "random seed"),
    "output_dir": (None, str, "where stage outputs go (default runs/<name>)"),
    "stages": (None, list, "ordered stages"),
}
DATA = {
    "source": ("auto", ("auto", "glue_dir", "tfds", "demo"), "auto: dir if given (or TFBERTOPT_GLUE_DIR), else tfds"),
    "dir": (None, str, "local GLUE folder (SST-2/train.tsv, ...)"),
    "max_train_examples": (None, int, "use the first N training examples"),
    "max_dev_examples": (None, int, "use the first N dev examples"),
    "on_bad_rows": ("raise", ("raise", "skip"), "bad data rows: fail, or skip and report them"),
    "demo_train_examples": (1024, int, "size of the synthetic demo training set"),
}
REQUIRED = ("name", "model", "task", "stages")
TRAINING_STAGES = ("finetune", "prune", "structured_prune", "layerdrop", "factorize", "distill", "qat")
MODEL_STAGES = TRAINING_STAGES      # stages that save a model (a distill teacher may be "stage:N" of these)
DISTILL_STUDENTS = ("every_other", "bilstm", "cnn", "previous")
NARROW_KEYS = ("hidden_dim", "num_layers", "num_heads", "intermediate_dim")
STUDENT_OPTIONS = {
    "bilstm": ("units", "hidden_units", "projection_dim", "trainable_embeddings", "dropout", "siamese"),
    "cnn": ("filters", "kernel_sizes", "hidden_units", "projection_dim", "trainable_embeddings", "dropout", "siamese"),
    "narrow": ("dropout",),
}


def _unknown(path: str, key: str, known) -> RecipeError:
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return RecipeError(f"{path}: unknown key '{key}'{hint}; known keys: {', '.join(known)}")


def _check_value(path: str, value, kind):
    if value is None:
        return None
    if isinstance(kind, tuple):
        if value not in kind:
            raise RecipeError(f"{path}: '{value}' is not one of {', '.join(map(str, kind))}")
        return value
    if kind is None:
        return value
    if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):
        try:
            return float(value)  # YAML reads "5e-5" (no dot) as a string
        except ValueError:
            pass
    if kind is int and isinstance(value, bool) or not isinstance(value, kind):
        raise RecipeError(f"{path}: expected {kind.__name__}, got {type(value).__name__} {value!r}")
    return value


def _fill(path: str, given, schema: dict) -> dict:
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise RecipeError(f"{path}: expected a mapping of options, got {type(given).__name__}")
    out = {}
    for key, value in given.items():
        if key not in schema:
            raise _unknown(path, key, schema)
        out[key] = _check_value(f"{path}.{key}" if path else key, value, schema[key][1])
    for key, (default, _, _) in schema.items():
        out.setdefault(key, copy.deepcopy(default))
    return out


def _parse_stage(i: int, stage) -> dict:
    path = f"stages[{i}]"
    if isinstance(stage, str):
        stage = {stage: {}}
    if not isinstance(stage, dict) or len(stage) != 1:
        raise RecipeError(f"{path}: a stage is a mapping with one key, the stage name, e.g. '- finetune: {{epochs: 2}}'")
    (name, options), = stage.items()
    if name not in STAGES:
        close = difflib.get_close_matches(str(name), list(STAGES), n=1)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        raise RecipeError(f"{path}: unknown stage '{name}'{hint}; known stages: {', '.join(STAGES)}")
    options = _fill(f"{path}.{name}", options, STAGES[name])
    if name == "export":
        for q in options["quantization"]:
            if q not in QUANTIZATION_CHOICES:
                raise RecipeError(f"{path}.export.quantization: unknown '{q}'; choose from {QUANTIZATION_CHOICES}")
    if name == "qat":
        if options["target"] not in TARGETS:
            raise RecipeError(f"{path}.qat.target: unknown '{options['target']}'; choose from {list(TARGETS)}")
        points = options["points"]
        if points is not None:     # None: the target's points
            unknown = [p for p in points if p not in POINTS]
            if unknown or not points:
                raise RecipeError(f"{path}.qat.points: unknown {unknown or 'empty list'}; choose from {list(POINTS)}")
        if not 0.0 <= options["ema_decay"] < 1.0:
            raise RecipeError(f"{path}.qat.ema_decay: must be in [0, 1), got {options['ema_decay']}")
    for key in ("final_sparsity", "initial_sparsity", "head_fraction", "neuron_fraction", "rate"):
        if key in options and not 0.0 <= options[key] < 1.0:
            raise RecipeError(f"{path}.{name}.{key}: must be in [0, 1), got {options[key]}")
    if name == "prune" and options["m_by_n"] is not None:
        nm = options["m_by_n"]
        if len(nm) != 2 or not all(isinstance(v, int) for v in nm) or not 0 < nm[0] < nm[1]:
            raise RecipeError(f"{path}.prune.m_by_n: expected [N, M] integers with 0 < N < M, got {nm}")
    if name == "distill":
        _check_distill(f"{path}.distill", options)
    if name == "factorize":
        _check_factorize(f"{path}.factorize", options)
    for key in ("epochs", "batch_size", "latency_runs", "max_steps", "verify_examples", "sequence_length",
                "length_grouping", "importance_batches", "frequency"):
        if options.get(key) is not None and options[key] < 1:
            raise RecipeError(f"{path}.{name}.{key}: must be >= 1, got {options[key]}")
    return {name: options}


def _check_factorize(path: str, options: dict) -> None:
    svd = [k for k in ("rank", "energy", "param_fraction") if options[k] is not None]
    if len(svd) > 1:
        raise RecipeError(f"{path}: give one SVD rule, not {svd}")
    if not svd and options["embedding_dim"] is None and options["share"] is None:
        raise RecipeError(f"{path}: nothing to do; set embedding_dim, one of rank/energy/param_fraction, or share")
    for key in ("energy", "param_fraction"):
        if options[key] is not None and not 0.0 < options[key] <= (1.0 if key == "energy" else 0.999999):
            raise RecipeError(f"{path}.{key}: must be in (0, 1), got {options[key]}")
    for key in ("rank", "embedding_dim"):
        if options[key] is not None and options[key] < 1:
            raise RecipeError(f"{path}.{key}: must be >= 1, got {options[key]}")
    if options["recovery_epochs"] < 0:
        raise RecipeError(f"{path}.recovery_epochs: must be >= 0, got {options['recovery_epochs']}")
    if not options["share_parts"] or any(p not in ("attention", "ffn") for p in options["share_parts"]):
        raise RecipeError(f"{path}.share_parts: a non-empty subset of [attention, ffn], got {options['share_parts']}")
    share = options["share"]
    if share is not None and not (share in ("all", "pairs") or (isinstance(share, int) and not isinstance(share, bool)
                                                                and share >= 1)
                                  or (isinstance(share, list) and all(isinstance(g, list) for g in share))):
        raise RecipeError(f"{path}.share: expected all, pairs, a group size >= 1 or a list of layer lists, "
                          f"got {share!r}")


def student_kind(student) -> str:
    """"layers" (every_other or a list), "narrow" (a dict), or the name (bilstm, cnn, previous)."""
    if isinstance(student, dict):
        return "narrow"
    if isinstance(student, list) or student == "every_other":
        return "layers"
    return student


def _check_distill(path: str, options: dict) -> None:
    student = options["student"]
    if isinstance(student, str):
        if student not in DISTILL_STUDENTS:
            close = difflib.get_close_matches(student, DISTILL_STUDENTS, n=1)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise RecipeError(f"{path}.student: unknown student '{student}'{hint}; use one of "
                              f"{', '.join(DISTILL_STUDENTS)}, a list of teacher layers or a mapping of {NARROW_KEYS}")
    elif isinstance(student, list):
        if not student or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in student):
            raise RecipeError(f"{path}.student: a list of 0-based teacher layers to keep, e.g. [0, 2, 4]; got "
                              f"{student}")
    elif isinstance(student, dict):
        unknown = [k for k in student if k not in NARROW_KEYS]
        if unknown:
            raise _unknown(f"{path}.student", unknown[0], NARROW_KEYS)
        missing = [k for k in NARROW_KEYS if k not in student]
        if missing:
            raise RecipeError(f"{path}.student: a narrow student needs {list(NARROW_KEYS)}; missing {missing}")
        bad = [k for k in NARROW_KEYS if isinstance(student[k], bool) or not isinstance(student[k], int)
               or student[k] < 1]
        if bad:
            raise RecipeError(f"{path}.student.{bad[0]}: expected a positive integer, got {student[bad[0]]!r}")
        if student["hidden_dim"] % student["num_heads"]:
            raise RecipeError(f"{path}.student: hidden_dim ({student['hidden_dim']}) must be divisible by "
                              f"num_heads ({student['num_heads']})")
    else:
        raise RecipeError(f"{path}.student: expected a name, a list of layers or a mapping, got "
                          f"{type(student).__name__} {student!r}")
    kind = student_kind(student)
    allowed = STUDENT_OPTIONS.get(kind, ())
    for key in options["student_options"]:
        if key not in allowed:
            if not allowed:
                raise RecipeError(f"{path}.student_options: the {kind} student takes no options, got '{key}'")
            raise _unknown(f"{path}.student_options", key, allowed)
    try:
        config = DistillationConfig.from_config(options["distillation"])
    except (ValueError, TypeError) as e:
        raise RecipeError(f"{path}.distillation: {e}") from None
    options["distillation"] = config.get_config()
    layer_terms = [t for t in config.active_terms() if t in ("hidden", "attention", "embedding", "cls")]
    if kind in ("bilstm", "cnn") and layer_terms:
        raise RecipeError(f"{path}.distillation: the {kind} student is not a transformer: the {layer_terms} terms "
                          f"compare per-layer transformer states it does not have; use the logits and hard-label "
                          f"terms (Tang et al.: logits: mse)")
    teacher = options["teacher"]
    if student == "previous" and teacher == "previous":
        raise RecipeError(f"{path}: student and teacher are both 'previous' (the same model); name the teacher, "
                          f"e.g. teacher: stage:0")
    if teacher.startswith("stage:"):
        try:
            int(teacher[len("stage:"):])
        except ValueError:
            raise RecipeError(f"{path}.teacher: 'stage:N' takes a 0-based stage index, got '{teacher}'") from None


def parse_recipe(raw) -> dict:
    """Validates a recipe mapping and fills defaults; RecipeError on the first problem, before any work."""
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe: expected a mapping at the top level, got {type(raw).__name__}")
    recipe = _fill("", raw, TOP_LEVEL)
    for key in REQUIRED:
        if recipe.get(key) in (None, [], ""):
            raise RecipeError(f"{key}: required")
    try:
        get_task(recipe["task"])
    except ValueError as e:
        raise RecipeError(f"task: {e}") from None
    recipe["data"] = _fill("data", recipe["data"], DATA)
    recipe["stages"] = [_parse_stage(i, s) for i, s in enumerate(recipe["stages"])]
    names = [next(iter(s)) for s in recipe["stages"]]
    if "benchmark" in names and "export" not in names[: names.index("benchmark")]:
        raise RecipeError("stages: 'benchmark' measures exported models, so an 'export' stage must come before it")
    for i, (name, stage) in enumerate(zip(names, recipe["stages"])):
        if name == "export" and "qat" in names[:i]:
            target = recipe["stages"][max(j for j in range(i) if names[j] == "qat")]["qat"]["target"]
            other = {"int8": "int8-matmul", "int8-matmul": "int8"}[target]
            if other in stage[name]["quantization"]:
                raise RecipeError(f"stages[{i}].export.quantization: '{other}' does not run what the qat stage "
                                  f"before it trained (target '{target}'); export it as '{target}' (its trained "
                                  f"ranges), or set that stage's target: {other}")
        teacher = stage[name].get("teacher", "") if name == "distill" else ""
        if teacher.startswith("stage:"):
            n = int(teacher[len("stage:"):])
            if not 0 <= n < i or names[n] not in MODEL_STAGES:
                raise RecipeError(f"stages[{i}].distill.teacher: '{teacher}' must name an earlier stage that saves a "
                                  f"model ({', '.join(MODEL_STAGES)}); stages before it: {names[:i]}")
    if "export" in names:
        late = [n for n in names[names.index("export"):] if n in TRAINING_STAGES]
        if late:
            raise RecipeError(f"stages: '{late[0]}' comes after 'export', so its model would never be exported; "
                              f"put training stages before export")
    return recipe


def apply_override(raw: dict, assignment: str) -> None:
    """Applies `a.b.c=value` (value read as YAML) in place; `stages.<name>.<key>` addresses a stage by name."""
    if "=" not in assignment:
        raise RecipeError(f"--set {assignment}: expected KEY=VALUE, e.g. stages.finetune.epochs=3")
    key, value = assignment.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise RecipeError(f"--set {assignment}: KEY must be dot-separated names, e.g. stages.finetune.epochs=3")
    value = _safe_load(value, f"--set {key}: the value")
    node = raw
    for depth, part in enumerate(parts[:-1]):
        if isinstance(node, list):
            node = _stage_options(node, part, ".".join(parts[: depth + 1]))
            continue
        if not isinstance(node, dict):
            raise RecipeError(f"--set {key}: {'.'.join(parts[:depth]) or 'the recipe'} is not a mapping")
        if part not in node or node[part] is None:
            node[part] = {}
        node = node[part]
    if isinstance(node, list):
        raise RecipeError(f"--set {key}: name an option inside the stage, e.g. stages.finetune.epochs")
    if not isinstance(node, dict):
        raise RecipeError(f"--set {key}: {'.'.join(parts[:-1]) or 'the recipe'} is not a mapping")
    node[parts[-1]] = value


def _safe_load(text, where: str):
    """yaml.safe_load, with every way it can fail (bad syntax, unknown tags, impossible dates such as
    2001-02-30, nesting too deep) reported as a RecipeError."""
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, TypeError, AttributeError, IndexError, KeyError, ArithmeticError,
            RecursionError) as e:   # PyYAML constructors fail with plain Python errors on e.g. "!!int" alone
        raise RecipeError(f"{where}: not valid YAML: {e}") from None


def _stage_options(stages: list, part: str, path: str) -> dict:
    if part.isdigit() and int(part) < len(stages):
        stage = stages[int(part)]
        stage = stage if isinstance(stage, dict) else {stage: {}}
        name = next(iter(stage))
        stage[name] = stage[name] or {}
        stages[int(part)] = stage
        return stage[name]
    for i, stage in enumerate(stages):
        stage = stage if isinstance(stage, dict) else {stage: {}}
        if part in stage:
            stage[part] = stage[part] or {}
            stages[i] = stage
            return stage[part]
    names = [next(iter(s)) if isinstance(s, dict) else s for s in stages]
    raise RecipeError(f"--set {path}: the recipe has no stage '{part}'; its stages are {names}")


def load_recipe(path, overrides=()) -> dict:
    """Reads (yaml.safe_load), applies `--set` overrides and validates a recipe file."""
    if not os.path.exists(path):
        raise RecipeError(f"recipe file {path} does not exist")
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise RecipeError(f"{path}: not valid UTF-8 ({e.reason} at byte {e.start})") from None
    raw = _safe_load(text, path)
    if not isinstance(raw, dict):
        raise RecipeError(f"{path}: expected a mapping at the top level")
    for assignment in overrides:
        apply_override(raw, assignment)
    recipe = parse_recipe(raw)
    recipe["_path"] = os.path.abspath(path)
    return recipe
