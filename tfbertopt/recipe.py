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
tfbertopt.recipe.RecipeError: stages[0]: unknown stage 'finetun' (did you mean 'finetune'?); known stages: finetune, prune, structured_prune, layerdrop, factorize, trim_vocabulary, distill, qat, export, benchmark

A `distill` stage trains a student from a teacher with `tfbertopt.distillation.Distiller` (see
`tfbertopt.stages.distill`):

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

import difflib
import os

import yaml

from tfbertopt.data.tasks import get_task
from tfbertopt.distillation.config import DistillationConfig
from tfbertopt.distribute import STRATEGIES
from tfbertopt.quantizers.config import TARGETS
from tfbertopt.stages import STAGES
from tfbertopt.stages.base import RecipeError, fill

# Each option: (default, type or tuple of allowed values, description); each stage's own are in its Stage object
# (tfbertopt.stages).
TOP_LEVEL = {
    "name": (None, str, "recipe name (output folder name)"),
    "model": (None, str, "model source"),
    "task": (None, str, "GLUE task"),
    "data": ({}, dict, "data source"),
    "sequence_length": (128, int, "preprocessor sequence length"),
    "seed": (0, int, "random seed"),
    "output_dir": (None, str, "where stage outputs go (default runs/<name>)"),
    "distribute": ({}, dict, "training on several devices or workers (see `distribute` below)"),
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
DISTRIBUTE = {
    "strategy": ("none", STRATEGIES, "none: one device; mirrored: every local device (MirroredStrategy); "
                                     "multi_worker: the workers TF_CONFIG lists, each running this recipe "
                                     "(MultiWorkerMirroredStrategy; only the chief writes outputs; see "
                                     "docs/distributed.md)"),
}
REQUIRED = ("name", "model", "task", "stages")
TRAINING_STAGES = tuple(name for name, stage in STAGES.items() if stage.trains)
MODEL_STAGES = TRAINING_STAGES      # stages that save a model (a distill teacher may be "stage:N" of these)


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
    return {name: STAGES[name].parse(f"{path}.{name}", options)}


def parse_recipe(raw) -> dict:
    """Validates a recipe mapping and fills defaults; RecipeError on the first problem, before any work."""
    if not isinstance(raw, dict):
        raise RecipeError(f"recipe: expected a mapping at the top level, got {type(raw).__name__}")
    recipe = fill("", raw, TOP_LEVEL)
    for key in REQUIRED:
        if recipe.get(key) in (None, [], ""):
            raise RecipeError(f"{key}: required")
    try:
        get_task(recipe["task"])
    except ValueError as e:
        raise RecipeError(f"task: {e}") from None
    recipe["data"] = fill("data", recipe["data"], DATA)
    recipe["distribute"] = fill("distribute", recipe["distribute"], DISTRIBUTE)
    recipe["stages"] = [_parse_stage(i, s) for i, s in enumerate(recipe["stages"])]
    names = [next(iter(s)) for s in recipe["stages"]]
    if "benchmark" in names and "export" not in names[: names.index("benchmark")]:
        raise RecipeError("stages: 'benchmark' measures exported models, so an 'export' stage must come before it")
    for i, (name, stage) in enumerate(zip(names, recipe["stages"])):
        if name == "export" and "qat" in names[:i]:
            target = recipe["stages"][max(j for j in range(i) if names[j] == "qat")]["qat"]["target"]
            other = next((q for q in stage[name]["quantization"] if q in TARGETS and q != target), None)
            if other is not None:
                raise RecipeError(f"stages[{i}].export.quantization: '{other}' does not run what the qat stage "
                                  f"before it trained (target '{target}'); export it as '{target}' (its trained "
                                  f"ranges or kernels), or set that stage's target: {other}")
        teacher = stage[name].get("teacher", "") if name == "distill" else ""
        if teacher.startswith("stage:"):
            n = int(teacher[len("stage:"):])
            if not 0 <= n < i or names[n] not in MODEL_STAGES:
                raise RecipeError(f"stages[{i}].distill.teacher: '{teacher}' must name an earlier stage that saves a "
                                  f"model ({', '.join(MODEL_STAGES)}); stages before it: {names[:i]}")
        if name == "distill" and stage[name]["student"] == "previous":
            _check_trimmed_student(i, stage[name], names)
    if "export" in names:
        late = [n for n in names[names.index("export"):] if n in TRAINING_STAGES]
        if late:
            raise RecipeError(f"stages: '{late[0]}' comes after 'export', so its model would never be exported; "
                              f"put training stages before export")
    return recipe


def _check_trimmed_student(i: int, options: dict, names: list) -> None:
    """A student trimmed after its teacher stage reads other token ids: it learns from cached teacher logits (a
    teacher loaded from a file is checked when the stage runs)."""
    trims = [j for j in range(i) if names[j] == "trim_vocabulary"]
    teacher = options["teacher"]
    if not trims or not teacher.startswith("stage:") or int(teacher[len("stage:"):]) >= trims[-1]:
        return
    terms = set(DistillationConfig.from_config(options["distillation"]).active_terms()) - {"hard", "logits"}
    if not options["cache"] or terms:
        raise RecipeError(f"stages[{i}].distill: the student's vocabulary was trimmed (stages[{trims[-1]}]) and the "
                          f"teacher's was not, so the two read different token ids; it learns from the teacher's "
                          f"logits cached per text: set cache: true and use the logits and hard-label terms only")


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
