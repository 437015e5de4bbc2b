"""Runs a validated recipe stage by stage, handing each stage's model to the next.

Every finished stage is recorded in `<output_dir>/state.json` with its outputs (models are saved as `.keras`), so
running the same recipe again resumes after the last finished stage; fine-tuning itself resumes at its epoch
through `BackupAndRestore`. Outputs: per-stage folders, the .tflite files, `report.json` and `report.md`.

Example (the offline demo: a tiny BERT on synthetic data, about a minute):

>>> from tfbertopt.runner import run_recipe   # doctest: +SKIP
>>> run_recipe(load_recipe("recipes/demo.yaml"))   # doctest: +SKIP
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time

from tfbertopt import models, saving
from tfbertopt.bench import harness, latency, pareto
from tfbertopt.bench.harness import command_line
from tfbertopt.data.demo import demo_examples, demo_vocabulary
from tfbertopt.data.glue import load_glue
from tfbertopt.data.pipeline import encode, steps_per_epoch
from tfbertopt.data.tasks import get_task
from tfbertopt.distillation import (DistillationConfig, IntermediateModel, TeacherCache, bilstm_student,
                                    cache_teacher_outputs, cnn_student, narrow_student, student_from_teacher)
from tfbertopt.distillation.mapping import layer_map
from tfbertopt.distillation.word_students import is_word_student
from tfbertopt.export.litert import ExportError, ExportResult
from tfbertopt.export.verified import export_verified
from tfbertopt.export.verify import VerificationReport
from tfbertopt.factorization import factorize, factorize_embeddings, plan_factorization, share_layers
from tfbertopt.kernels import UnsupportedModelError, count_params
from tfbertopt.pruning import (ConstantSparsity, PolynomialDecay, PruningPolicy, UpdatePruningStep, get_pruning,
                               prune_low_magnitude, strip_pruning)
from tfbertopt.pruning.structured import (plan_by_importance, plan_drop_layers, shrink, structure_importance,
                                          with_layerdrop)
from tfbertopt.quantization import QuantizationConfig, activation_ranges, quantize_model
from tfbertopt.quantizers.modes import MODES
from tfbertopt.recipe import student_kind
from tfbertopt.train import finetune, predict_logits

logger = logging.getLogger(__name__)


class StageError(RuntimeError):
    """A recipe stage that cannot run on this model or with these options; the message names the stage and why."""


def say(message: str) -> None:
    print(f"[tfbertopt {time.strftime('%H:%M:%S')}] {message}", flush=True)


def _resolve_dir(recipe: dict, value: str | None) -> str | None:
    """Paths in a recipe are relative to the working directory, or failing that to the recipe file."""
    if value is None:
        return None
    if os.path.isabs(value) or os.path.exists(value) or "_path" not in recipe:
        return value
    candidate = os.path.join(os.path.dirname(recipe["_path"]), value)
    return candidate if os.path.exists(candidate) else value


def load_data(recipe: dict):
    """(train, dev) Examples for the recipe's task and data source."""
    data = recipe["data"]
    task = get_task(recipe["task"])
    if data["source"] == "demo":
        if task.name != "sst2":
            raise ValueError(f"the synthetic demo data is an sst2-style task; the recipe asks for {task.name}")
        return demo_examples("train", data["demo_train_examples"]), demo_examples("dev", 256)
    data_dir = None
    if data["source"] in ("auto", "glue_dir"):
        data_dir = _resolve_dir(recipe, data["dir"])
        if data["source"] == "glue_dir" and data_dir is None:
            raise ValueError("data.source is glue_dir but data.dir is not set")
        if data_dir is not None and not os.path.isdir(data_dir):
            raise FileNotFoundError(f"data.dir {data_dir} is not a folder (expected a GLUE folder with "
                                    f"{task.folder}/train.tsv)")
    kwargs = dict(data_dir=data_dir, on_bad_rows=data["on_bad_rows"])
    train = load_glue(task, "train", max_examples=data["max_train_examples"], **kwargs)
    dev = load_glue(task, "dev", max_examples=data["max_dev_examples"], **kwargs)
    for split in (train, dev):
        if split.bad_rows:
            say(f"{split.source}: skipped {len(split.bad_rows)} bad rows (first: line {split.bad_rows[0][0]}: "
                f"{split.bad_rows[0][1]})")
    return train, dev


def build_model(recipe: dict):
    task = get_task(recipe["task"])
    if recipe["model"] == "demo":
        say("model: DEMO tiny BERT (2 layers, H64, random init) over the synthetic demo vocabulary")
        return models.tiny_bert_classifier(demo_vocabulary(), num_classes=task.num_classes,
                                           sequence_length=recipe["sequence_length"], seed=recipe["seed"])
    if recipe["model"].startswith("demo-"):
        family = recipe["model"][len("demo-"):]
        if family not in models.TINY_FAMILIES:
            raise models.ModelSourceError(f"model {recipe['model']!r}: no tiny {family!r} classifier; demo models "
                                          f"are {['demo-' + f for f in models.TINY_FAMILIES]}")
        say(f"model: DEMO tiny {family} (2 layers, H64, random init) over the synthetic demo vocabulary")
        return models.tiny_classifier(family, num_classes=task.num_classes, sequence_length=recipe["sequence_length"],
                                      hidden_dim=64, intermediate_dim=128, seed=recipe["seed"], dropout=0.1,
                                      embedding_dim=32 if family in ("electra", "albert") else None)
    source = _resolve_dir(recipe, recipe["model"])
    say(f"model: {source}")
    return models.load_classifier(source, num_classes=task.num_classes, sequence_length=recipe["sequence_length"])


class Run:
    """State of one recipe run: its folder, finished stages, and the current model."""

    def __init__(self, recipe: dict, output_dir: str | None = None):
        self.recipe = recipe
        self.dir = output_dir or recipe["output_dir"] or os.path.join("runs", recipe["name"])
        os.makedirs(self.dir, exist_ok=True)
        self.state_path = os.path.join(self.dir, "state.json")
        self.state = {"finished": {}}
        if os.path.exists(self.state_path):
            with open(self.state_path) as f:
                self.state = json.load(f)
        self.model = None
        self.exports = []

    def stage_dir(self, i: int, name: str) -> str:
        path = os.path.join(self.dir, f"{i:02d}_{name}")
        os.makedirs(path, exist_ok=True)
        return path

    def finish(self, key: str, outputs: dict) -> None:
        self.state["finished"][key] = outputs
        with open(self.state_path, "w") as f:
            json.dump(self.state, f, indent=2)


def _stage_finetune(run: Run, options: dict, stage_dir: str, train, dev) -> dict:
    say(f"finetune: {len(train)} train / {len(dev)} dev examples, {options['epochs']} epochs")
    history = finetune(run.model, train, dev, epochs=options["epochs"], batch_size=options["batch_size"],
                       learning_rate=options["learning_rate"], weight_decay=options["weight_decay"],
                       warmup_fraction=options["warmup_fraction"], max_steps=options["max_steps"],
                       length_grouping=options["length_grouping"],
                       checkpoint_dir=os.path.join(stage_dir, "checkpoints"), seed=run.recipe["seed"],
                       verbose=2)
    logs = {k: [float(x) for x in v] for k, v in history.history.items()}
    return _save_stage_model(run, stage_dir, {"history": logs})


def _save_stage_model(run: Run, stage_dir: str, outputs: dict) -> dict:
    path = os.path.join(stage_dir, "model.keras")
    run.model.save(path)
    outputs["model"] = path
    outputs["params"] = count_params(run.model)
    return outputs


def _stage_prune(run: Run, options: dict, stage_dir: str, train, dev) -> dict:
    steps = steps_per_epoch(len(train), options["batch_size"])
    if options["max_steps"]:
        steps = min(steps, options["max_steps"])
    total = steps * options["epochs"]
    end = max(1, int(total * options["end_fraction"]))
    frequency = options["frequency"] or max(1, end // 20)
    if options["schedule"] == "constant":
        schedule = ConstantSparsity(options["final_sparsity"], 0, frequency=frequency)
    else:
        schedule = PolynomialDecay(options["initial_sparsity"], options["final_sparsity"], 0, end,
                                   frequency=frequency)
    nm = tuple(options["m_by_n"]) if options["m_by_n"] else None
    say(f"prune: {'N:M ' + str(nm) if nm else options['schedule']} to {options['final_sparsity']} over {end} "
        f"of {total} steps, roles {options['roles']}")
    prune_low_magnitude(run.model, schedule, PruningPolicy(roles=options["roles"]), sparsity_m_by_n=nm,
                        global_threshold=options["global_threshold"])
    finetune(run.model, train, dev, epochs=options["epochs"], batch_size=options["batch_size"],
             learning_rate=options["learning_rate"], max_steps=options["max_steps"], seed=run.recipe["seed"],
             callbacks=[UpdatePruningStep()], verbose=2)
    sparsities = get_pruning(run.model).sparsities()
    overall = get_pruning(run.model).overall_sparsity()
    strip_pruning(run.model)
    say(f"prune: overall sparsity {overall:.4f}")
    tags = ["n:m"] if options["m_by_n"] else ["gmp", "unstructured"]
    return _save_stage_model(run, stage_dir, {"sparsity": overall, "per_kernel": sparsities, "tags": tags})


def _stage_structured_prune(run: Run, options: dict, stage_dir: str, train, dev) -> dict:
    n = min(len(train), options["importance_batches"] * options["batch_size"])
    features = encode(train.texts[:n], run.model.preprocessor)
    scores = structure_importance(run.model, features, train.labels[:n], train.task,
                                  batches=options["importance_batches"], batch_size=options["batch_size"])
    plan = plan_by_importance(run.model, scores, options["head_fraction"], options["neuron_fraction"])
    if options["drop_layers"]:
        plan = plan_drop_layers(run.model, options["drop_layers"], plan)
    say(f"structured_prune: keeping {plan.summary(run.model)}")
    summary = plan.summary(run.model)
    run.model = shrink(run.model, plan)
    if options["recovery_epochs"]:
        finetune(run.model, train, dev, epochs=options["recovery_epochs"], batch_size=options["batch_size"],
                 learning_rate=options["learning_rate"], max_steps=options["max_steps"], seed=run.recipe["seed"],
                 verbose=2)
    return _save_stage_model(run, stage_dir, {"plan": summary, "tags": ["heads", "ffn", "structured", "shrink"]})


def _stage_layerdrop(run: Run, options: dict, stage_dir: str, train, dev) -> dict:
    say(f"layerdrop: fine-tuning with LayerDrop p={options['rate']}, then dropping {options['drop_layers']}")
    run.model = with_layerdrop(run.model, options["rate"])
    finetune(run.model, train, dev, epochs=options["epochs"], batch_size=options["batch_size"],
             learning_rate=options["learning_rate"], max_steps=options["max_steps"], seed=run.recipe["seed"],
             verbose=2)
    plan = plan_drop_layers(run.model, options["drop_layers"])
    summary = plan.summary(run.model)
    run.model = shrink(run.model, plan)
    return _save_stage_model(run, stage_dir, {"plan": summary, "tags": ["layerdrop", "layers", "shrink"]})


def _stage_factorize(run: Run, options: dict, stage_dir: str, train, dev) -> dict:
    before, params = run.model, count_params(run.model)
    model, done, tags = run.model, [], []
    if options["embedding_dim"] is not None:
        model = factorize_embeddings(model, dim=options["embedding_dim"])
        done.append(f"embedding E={options['embedding_dim']}")
        tags.append("embedding-factorization")
    if options["share"] is not None:
        model = share_layers(model, options["share"], init=options["share_init"], parts=options["share_parts"])
        done.append(f"sharing {'+'.join(options['share_parts'])} of {options['share']} ({options['share_init']} "
                    f"init)")
        tags.append("sharing")
    rule = {k: options[k] for k in ("rank", "energy", "param_fraction") if options[k] is not None}
    if rule:
        plan = plan_factorization(model, roles=options["roles"], **rule)
        model = factorize(model, plan)
        done.append(f"SVD {rule}: {plan.summary()}")
        tags.append("svd")
    say(f"factorize: {'; '.join(done)}; {params:,} -> {count_params(model):,} weights")
    if options["recovery_epochs"]:
        teacher = before if options["distill_recovery"] else None
        tags += ["distill", "logits-kd"] if teacher is not None else []
        finetune(model, train, dev, epochs=options["recovery_epochs"], batch_size=options["batch_size"],
                 learning_rate=options["learning_rate"], max_steps=options["max_steps"], seed=run.recipe["seed"],
                 verbose=2, teacher=teacher)
    run.model = model
    return _save_stage_model(run, stage_dir, {"factorization": done, "tags": tags, "params_before": params,
                                              "params_after": count_params(model)})


TERM_TAGS = {"logits": "logits-kd", "hidden": "hidden-kd", "attention": "attention-kd", "embedding": "hidden-kd",
             "cls": "pkd"}


def _load_teacher(run: Run, source: str, i: int):
    """The distillation teacher a `distill` stage names (see tfbertopt.recipe, option `teacher`)."""
    if source == "previous":
        return run.model
    if source.startswith("stage:"):
        n = int(source[len("stage:"):])
        key = next((k for k in run.state["finished"] if k.startswith(f"{n:02d}_")), None)
        path = run.state["finished"].get(key, {}).get("model") if key else None
        if path is None or not os.path.exists(path):
            raise FileNotFoundError(f"stages[{i}].distill.teacher: stage {n} has no saved model ({path}); run the "
                                    f"recipe from the start")
        say(f"distill: teacher = the model of stage {key}: {path}")
        return saving.load_model(path, compile=False)
    resolved = _resolve_dir(run.recipe, source)
    say(f"distill: teacher = {resolved}")
    if str(resolved).endswith(".keras"):
        return saving.load_model(resolved, compile=False)
    task = get_task(run.recipe["task"])
    return models.load_classifier(resolved, num_classes=task.num_classes,
                                  sequence_length=run.recipe["sequence_length"])


def _make_student(run: Run, teacher, student, options: dict):
    extra = options["student_options"]
    if student == "previous":
        model = run.model
    elif student == "bilstm":
        model = bilstm_student(teacher, seed=run.recipe["seed"], **extra)
    elif student == "cnn":
        model = cnn_student(teacher, seed=run.recipe["seed"], **extra)
    elif isinstance(student, dict):
        model = narrow_student(teacher, seed=run.recipe["seed"], **student, **extra)
    else:
        model = student_from_teacher(teacher, student)
    model.trainable = True
    return model


def _teacher_cache(run: Run, teacher, student, config, options: dict, stage_dir: str, train):
    """A TeacherCache of the outputs the active terms need, written once per stage (reused on resume)."""
    path = os.path.join(stage_dir, "teacher_cache")
    features = encode(train.texts, teacher.preprocessor)
    if os.path.exists(os.path.join(path, "meta.json")):
        say(f"distill: reusing the teacher cache {path}")
        cache = TeacherCache(path)
        cache.check_features(features)
        return cache
    terms = config.active_terms()
    hidden, attention = [], []
    if config.uses_layers():
        n_student = 0 if is_word_student(student) else IntermediateModel(student, attention=False).num_layers
        n_teacher = IntermediateModel(teacher, attention=False).num_layers
        layers = sorted(set(layer_map(config.layer_map, n_student, n_teacher).values()))
        hidden = layers if any(t in terms for t in ("hidden", "cls")) else []
        attention = layers if "attention" in terms else []
    return cache_teacher_outputs(teacher, features, path, logits="logits" in terms, hidden_layers=hidden,
                                 attention_layers=attention, embedding="embedding" in terms,
                                 max_bytes=options["cache_max_bytes"], overwrite=True)


def _stage_distill(run: Run, options: dict, stage_dir: str, train, dev, index: int = 0) -> dict:
    config = DistillationConfig.from_config(options["distillation"])
    teacher = _load_teacher(run, options["teacher"], index)
    teacher.trainable = False
    student = _make_student(run, teacher, options["student"], options)
    kind = student_kind(options["student"])
    say(f"distill: {kind} student ({student.name}, {student.count_params()} params) from teacher {teacher.name} "
        f"({teacher.count_params()} params), terms {config.active_terms()}")
    teacher_arg = teacher
    if options["cache"]:
        teacher_arg = _teacher_cache(run, teacher, student, config, options, stage_dir, train)
    history = finetune(student, train, dev, epochs=options["epochs"], batch_size=options["batch_size"],
                       learning_rate=options["learning_rate"], weight_decay=options["weight_decay"],
                       warmup_fraction=options["warmup_fraction"], max_steps=options["max_steps"],
                       length_grouping=options["length_grouping"],
                       checkpoint_dir=os.path.join(stage_dir, "checkpoints"), seed=run.recipe["seed"], verbose=2,
                       teacher=teacher_arg, distillation=config)
    run.model = student
    tags = ["distill"] + sorted({TERM_TAGS[t] for t in config.active_terms() if t in TERM_TAGS}) + \
        ([kind] if kind in ("bilstm", "cnn") else [])
    logs = {k: [float(x) for x in v] for k, v in history.history.items()}
    return _save_stage_model(run, stage_dir, {"history": logs, "student": kind, "teacher": options["teacher"],
                                              "distillation": config.get_config(), "tags": tags,
                                              "cached_teacher": bool(options["cache"])})


def _stage_qat(run: Run, options: dict, stage_dir: str, train, dev) -> dict:
    """Quantization-aware fine-tuning: ranges start from a calibration pass, then train (optionally distilled, with
    finetune's default loss: 0.5 hard labels + 0.5 KL at T=2, as factorize's distill_recovery)."""
    config = QuantizationConfig.for_export(options["target"])
    config = dataclasses.replace(config, points=tuple(options["points"] or config.points),
                                 ema_decay=options["ema_decay"], symmetric_activations=options["symmetric_activations"])
    say(f"qat for the {options['target']} graph: int8 fake-quant at {', '.join(config.points)}; ranges from "
        f"{options['calibration_steps']} training examples")
    teacher = run.model
    run.model = quantize_model(run.model, config, calibration=train, calibration_steps=options["calibration_steps"])
    history = finetune(run.model, train, dev, epochs=options["epochs"], batch_size=options["batch_size"],
                       learning_rate=options["learning_rate"], max_steps=options["max_steps"],
                       seed=run.recipe["seed"], verbose=2, teacher=teacher if options["distill"] else None)
    logs = {k: [float(x) for x in v] for k, v in history.history.items()}
    return _save_stage_model(run, stage_dir, {"history": logs, "tags": ["qat"],
                                              "activation_ranges": len(activation_ranges(run.model))})


def _stage_export(run: Run, options: dict, stage_dir: str, train, dev) -> dict:
    """Writes each LiteRT variant only after it agrees with the Keras model on dev data (see export_verified)."""
    seq = options["sequence_length"] or run.recipe["sequence_length"]
    examples = dev if options["verify_examples"] is None else dev.take(options["verify_examples"])
    features = encode(examples.texts, run.model.preprocessor)
    keras_logits = predict_logits(run.model, features)
    exports = []
    for q in options["quantization"]:
        say(f"export: {q} LiteRT at sequence length {seq}, verifying on {len(examples)} dev examples")
        result, report = export_verified(
            run.model, os.path.join(stage_dir, f"model_{q}.tflite"), examples, q, seq, force=options["force"],
            features=features, keras_logits=keras_logits, max_logit_diff=options["max_logit_diff"],
            min_agreement=options["min_agreement"],
            calibration=train if MODES[q].calibrated else None,
            calibration_steps=options["calibration_steps"], mixed_precision=None if q != "mixed" else {
                "max_float_ops": options["mixed_max_float_ops"], "holdout": train,
                "holdout_size": options["mixed_holdout"]})
        say(f"export: {result.path} {result.size_mb:.1f} MB: {report.summary()}")
        exports.append({"path": result.path, "quantization": q, "size_bytes": result.size_bytes,
                        "ops": dict(result.ops), "float_ops": result.float_op_count, "sequence_length": seq,
                        "dev_examples": len(examples),
                        "verification": dataclasses.asdict(report)})
    return {"exports": exports}


VARIANT_TAGS = {name: list(mode.tags) for name, mode in MODES.items()}


def _stage_benchmark(run: Run, options: dict, stage_dir: str, train, dev) -> dict:
    """Times the files the export stage wrote (and verified), beside the float32 baseline, in one run."""
    task = get_task(run.recipe["task"])
    exports = [e for out in run.state["finished"].values() for e in out.get("exports", [])]
    # Stages that compress record their tags (distill, svd, sharing, ...); the exported model carries all of them.
    stage_tags = [t for out in run.state["finished"].values() for t in out.get("tags", [])]
    say("benchmark: measuring this machine's LiteRT int8 matmul peak")
    peak = latency.int8_peak_gmacs(num_threads=2)
    say(f"benchmark: int8 peak {peak:.0f} GMAC/s (2 threads)")
    params = count_params(run.model)
    base_variant = "float32" if any(e["quantization"] == "float32" for e in exports) else None
    rows = []
    for e in exports:
        q = e["quantization"]
        report = VerificationReport(**e["verification"])
        lat = {t: latency.litert_latency_ms(e["path"], num_threads=t, runs=options["latency_runs"])
               for t in options["threads"]}
        result = ExportResult(e["path"], q, e["size_bytes"], e["ops"], e["sequence_length"], ())
        tags = VARIANT_TAGS[q] if base_variant else [t for t in VARIANT_TAGS[q] if t != "baseline"]
        if stage_tags:   # a compressed model, not the teacher (no baseline/teacher tags)
            tags = list(dict.fromkeys(stage_tags)) + [t for t in VARIANT_TAGS[q]
                                                      if t not in ("baseline", "teacher", "finetune")]
        row = harness.litert_row(q, tags, None if q == base_variant else base_variant, result, report, task.name,
                                 harness.model_macs(run.model, e["sequence_length"]), params, peak, lat.get(2),
                                 lat.get(1))
        if q == base_variant:
            row["keras_examples_per_s"] = round(harness.keras_throughput(run.model, e["sequence_length"]), 2)
        row["dev_examples"] = e["dev_examples"]
        if e.get("float_ops") is not None:    # full-integer exports: ops left in float
            row["float_ops"] = e["float_ops"]
        rows.append(row)
        say(f"benchmark: {q}: {row['tflite_mb']} MB, {row['latency_ms']} ms (2 threads)")
    command = command_line()
    stages = stage_rows(run)
    extra = {"recipe": run.recipe.get("_path"), "data": dev.source, "stages": stages}
    doc = harness.write_results(os.path.join(run.dir, "report.json"), run.recipe["name"], command, rows, peak,
                                extra=extra)
    with open(os.path.join(run.dir, "report.md"), "a") as f:
        f.write("\n## Stages\n\n" + stage_table(stages) + "\n")
    if options["results"]:
        harness.write_results(options["results"], run.recipe["name"], command, rows, peak, extra=extra)
    print(harness.markdown_table(doc["rows"]), flush=True)
    outputs = {"report": os.path.join(run.dir, "report.json"), "rows": rows}

    try:   # the plots are extras: report.json/.md above are the essential outputs
        points, _ = pareto.points_from_results(doc, run.recipe["name"])
        outputs["plots"] = [str(p) for p in pareto.plot_pareto(points, run.dir, task=task.name)]
        say(f"benchmark: plots {', '.join(outputs['plots'])}")
    except ImportError as e:
        say(f"benchmark: no accuracy-vs-size/latency plots: {e}")
    return outputs


def stage_rows(run: Run) -> list[dict]:
    """One row per finished training stage: seconds, parameters (and the ratio to the recipe's starting model),
    and the last dev metric its training logged."""
    start = run.state.get("start_params")
    rows = []
    for key, out in run.state["finished"].items():
        if "params" not in out:
            continue
        history = out.get("history") or {}
        dev = {k: v[-1] for k, v in history.items() if k.startswith("dev_") and v}
        rows.append({"stage": key, "seconds": out.get("seconds"), "params": out["params"],
                     "x_fewer_params": round(start / out["params"], 2) if start else None, **dev})
    return rows


def stage_table(rows: list[dict]) -> str:
    """The stage rows as a markdown table (dev metrics as logged; '-' where a stage logged none)."""
    metrics = sorted({k for r in rows for k in r if k.startswith("dev_")})
    head = ["stage", "seconds", "params", "x fewer params"] + metrics
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        seconds = f"{r['seconds']:.0f}" if r.get("seconds") is not None else "-"
        cells = [r["stage"], seconds, f"{r['params'] / 1e6:.2f}M",
                 f"{r['x_fewer_params']:.2f}" if r.get("x_fewer_params") else "-"]
        cells += [f"{r[m]:.4f}" if isinstance(r.get(m), (int, float)) else "-" for m in metrics]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


STAGE_FUNCTIONS = {"finetune": _stage_finetune, "prune": _stage_prune, "structured_prune": _stage_structured_prune,
                   "layerdrop": _stage_layerdrop, "factorize": _stage_factorize, "distill": _stage_distill,
                   "qat": _stage_qat, "export": _stage_export, "benchmark": _stage_benchmark}


def run_recipe(recipe: dict, output_dir: str | None = None) -> Run:
    """Runs every stage of a validated recipe (see `tfbertopt.recipe.load_recipe`), resuming finished ones."""
    run = Run(recipe, output_dir)
    say(f"recipe '{recipe['name']}' -> {run.dir}")
    train, dev = load_data(recipe)
    say(f"data: {len(train)} train, {len(dev)} dev examples from {train.source}")
    model_path = None
    for key, outputs in run.state["finished"].items():
        model_path = outputs.get("model", model_path)
    if model_path and os.path.exists(model_path):
        say(f"resuming: loading {model_path}")
        run.model = saving.load_model(model_path)
    else:
        run.model = build_model(recipe)
    if "start_params" not in run.state:     # the stage table's reference (the recipe's model before any stage)

        run.state["start_params"] = count_params(run.model)
    for i, stage in enumerate(recipe["stages"]):
        (name, options), = stage.items()
        key = f"{i:02d}_{name}"
        if key in run.state["finished"]:
            say(f"stage {key}: already finished, skipping")
            continue
        started = time.time()
        say(f"stage {key}: start")
        extra = {"index": i} if name == "distill" else {}
        try:
            outputs = STAGE_FUNCTIONS[name](run, options, run.stage_dir(i, name), train, dev, **extra)
        except (UnsupportedModelError, ValueError, ExportError) as e:    # the method refuses this model or options
            raise StageError(f"stage {key} cannot run: {e}") from e
        outputs["seconds"] = round(time.time() - started, 1)
        run.finish(key, outputs)
        say(f"stage {key}: done in {outputs['seconds']:.0f} s")
    return run
