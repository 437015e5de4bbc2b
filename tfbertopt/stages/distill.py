"""The `distill` stage: trains a student from a teacher (`tfbertopt.distillation`)."""

from __future__ import annotations

import difflib
import os
from typing import ClassVar

from tfbertopt import models, saving
from tfbertopt.data.pipeline import encode
from tfbertopt.data.tasks import get_task
from tfbertopt.distillation import (DistillationConfig, IntermediateModel, TeacherCache, bilstm_student,
                                    cache_teacher_outputs, cnn_student, narrow_student, student_from_teacher)
from tfbertopt.distillation.augmentation import augmented_copies, with_copies
from tfbertopt.distillation.cache import vocabulary_fingerprint
from tfbertopt.distillation.mapping import layer_map
from tfbertopt.distillation.word_students import is_word_student
from tfbertopt.evaluation import predict_logits
from tfbertopt.stages.base import RecipeError, Stage, resolve_path, say, unknown_key
from tfbertopt.stages.finetune import finetune_options
from tfbertopt.train import finetune

DISTILL_STUDENTS = ("every_other", "bilstm", "cnn", "previous")
NARROW_KEYS = ("hidden_dim", "num_layers", "num_heads", "intermediate_dim")
# augment: option -> (type, lower bound, upper bound) of augment_examples' arguments.
AUGMENT_KEYS = {"copies": (int, 0, None), "probability": (float, 0.0, 1.0), "neighbours": (int, 1, None)}
STUDENT_OPTIONS = {
    "bilstm": ("units", "hidden_units", "projection_dim", "trainable_embeddings", "dropout", "siamese"),
    "cnn": ("filters", "kernel_sizes", "hidden_units", "projection_dim", "trainable_embeddings", "dropout", "siamese"),
    "narrow": ("dropout",),
}
# The result tag of each distillation term (embedding states count as hidden states; [CLS] states are PKD's).
TERM_TAGS = {"logits": "logits-kd", "hidden": "hidden-kd", "attention": "attention-kd", "embedding": "hidden-kd",
             "cls": "pkd"}


def student_kind(student) -> str:
    """"layers" (every_other or a list), "narrow" (a dict), or the name (bilstm, cnn, previous)."""
    if isinstance(student, dict):
        return "narrow"
    if isinstance(student, list) or student == "every_other":
        return "layers"
    return student


class DistillStage(Stage):
    """Trains a student (teacher layers kept, a narrow transformer, a BiLSTM or CNN word model, or the previous
    model) from a teacher with `tfbertopt.distillation.Distiller`, optionally from teacher outputs cached on disk."""

    name = "distill"
    options: ClassVar[dict] = {
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
        **finetune_options(epochs=3),
        "cache": (False, bool, "run the teacher once over the training data, keep the outputs the loss terms need "
                               "on disk and train from them"),
        "cache_max_bytes": (1_000_000_000, int, "refuse a teacher cache larger than this"),
        "augment": ({}, dict, "TinyBERT word replacement over the training text, labelled by the teacher: copies "
                              "(per example; 0 or absent = off), probability (per word, 0.4), neighbours (15)"),
    }
    allowed: ClassVar[dict] = {"student": "every_other | bilstm | cnn | previous | list | mapping"}
    counts = ("epochs", "batch_size", "max_steps", "length_grouping")
    trains = True

    def check(self, path: str, options: dict) -> None:
        """The student, its options and the distillation terms it can take, the teacher's form; normalises
        `options["distillation"]` to the full DistillationConfig."""
        student = options["student"]
        if isinstance(student, str):
            if student not in DISTILL_STUDENTS:
                close = difflib.get_close_matches(student, DISTILL_STUDENTS, n=1)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise RecipeError(f"{path}.student: unknown student '{student}'{hint}; use one of "
                                  f"{', '.join(DISTILL_STUDENTS)}, a list of teacher layers or a mapping of "
                                  f"{NARROW_KEYS}")
        elif isinstance(student, list):
            if not student or any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in student):
                raise RecipeError(f"{path}.student: a list of 0-based teacher layers to keep, e.g. [0, 2, 4]; got "
                                  f"{student}")
        elif isinstance(student, dict):
            unknown = [k for k in student if k not in NARROW_KEYS]
            if unknown:
                raise unknown_key(f"{path}.student", unknown[0], NARROW_KEYS)
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
        _check_augment(f"{path}.augment", options["augment"])
        kind = student_kind(student)
        allowed = STUDENT_OPTIONS.get(kind, ())
        for key in options["student_options"]:
            if key not in allowed:
                if not allowed:
                    raise RecipeError(f"{path}.student_options: the {kind} student takes no options, got '{key}'")
                raise unknown_key(f"{path}.student_options", key, allowed)
        try:
            config = DistillationConfig.from_config(options["distillation"])
        except (ValueError, TypeError) as e:
            raise RecipeError(f"{path}.distillation: {e}") from None
        options["distillation"] = config.get_config()
        layer_terms = [t for t in config.active_terms() if t in ("hidden", "attention", "embedding", "cls")]
        if kind in ("bilstm", "cnn") and layer_terms:
            raise RecipeError(f"{path}.distillation: the {kind} student is not a transformer: the {layer_terms} "
                              f"terms compare per-layer transformer states it does not have; use the logits and "
                              f"hard-label terms (Tang et al.: logits: mse)")
        teacher = options["teacher"]
        if student == "previous" and teacher == "previous":
            raise RecipeError(f"{path}: student and teacher are both 'previous' (the same model); name the teacher, "
                              f"e.g. teacher: stage:0")
        if teacher.startswith("stage:"):
            try:
                int(teacher[len("stage:"):])
            except ValueError:
                raise RecipeError(f"{path}.teacher: 'stage:N' takes a 0-based stage index, got '{teacher}'") from None

    def tags(self, options: dict) -> list[str]:
        terms = DistillationConfig.from_config(options["distillation"]).active_terms()
        kind = student_kind(options["student"])
        return ["distill"] + sorted({TERM_TAGS[t] for t in terms if t in TERM_TAGS}) + \
            ([kind] if kind in ("bilstm", "cnn") else []) + (["augment"] if options["augment"].get("copies") else [])

    def run(self, run, options: dict, stage_dir: str, train, dev, index: int) -> dict:
        config = DistillationConfig.from_config(options["distillation"])
        teacher = _load_teacher(run, options["teacher"], index)
        teacher.trainable = False
        student = _make_student(run, teacher, options["student"], options)
        kind = student_kind(options["student"])
        say(f"distill: {kind} student ({student.name}, {student.count_params()} params) from teacher {teacher.name} "
            f"({teacher.count_params()} params), terms {config.active_terms()}")
        copies = []
        if options["augment"].get("copies", 0):
            copies = augmented_copies(teacher, train, seed=run.recipe["seed"], **options["augment"])
            say(f"distill: {len(copies)} augmented copies of {len(train)} training examples, labelled by the teacher")
        teacher_arg, logits = teacher, None
        keyed = _own_tokenizer(student, teacher)
        if keyed and (not options["cache"] or set(config.active_terms()) - {"hard", "logits"}):
            raise RecipeError(f"stages[{index}].distill: the student's vocabulary is not the teacher's (trimmed), so "
                              f"the two read different token ids; it learns from the teacher's logits cached per "
                              f"text: set cache: true and use the logits and hard-label terms only")
        if options["cache"]:     # the cache covers the copies; its logits label them (one teacher pass)
            data = with_copies(train, copies) if copies else train
            teacher_arg = _teacher_cache(teacher, student, config, options, stage_dir, data, keyed)
            logits = teacher_arg.logits[len(train):] if teacher_arg.has_logits else None
        if copies:
            if logits is None:
                logits = predict_logits(teacher, encode(copies, teacher.preprocessor))
            train = with_copies(train, copies, logits)
        history = finetune(student, train, dev, epochs=options["epochs"], batch_size=options["batch_size"],
                           learning_rate=options["learning_rate"], weight_decay=options["weight_decay"],
                           warmup_fraction=options["warmup_fraction"], max_steps=options["max_steps"],
                           length_grouping=options["length_grouping"], keep=options["keep"],
                           checkpoint_dir=os.path.join(stage_dir, "checkpoints"), seed=run.recipe["seed"],
                           verbose=2, teacher=teacher_arg, distillation=config)
        run.model = student
        logs = {k: [float(x) for x in v] for k, v in history.history.items()}
        return self.save_model(run, stage_dir, {"history": logs, "student": kind, "teacher": options["teacher"],
                                                "distillation": config.get_config(), "tags": self.tags(options),
                                                "cached_teacher": bool(options["cache"])})


def _check_augment(path: str, augment: dict) -> None:
    for key, value in augment.items():
        if key not in AUGMENT_KEYS:
            raise unknown_key(path, key, tuple(AUGMENT_KEYS))
        kind, low, high = AUGMENT_KEYS[key]
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (kind is int and not isinstance(value, int)) or value < low or (high is not None
                                                                                          and value > high):
            bound = f"between {low} and {high}" if high is not None else f"at least {low}"
            raise RecipeError(f"{path}.{key}: expected {'an integer' if kind is int else 'a number'} {bound}, got "
                              f"{value!r}")


def _load_teacher(run, source: str, i: int):
    """The distillation teacher the option `teacher` names."""
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
    resolved = resolve_path(run.recipe, source)
    say(f"distill: teacher = {resolved}")
    if str(resolved).endswith(".keras"):
        return saving.load_model(resolved, compile=False)
    task = get_task(run.recipe["task"])
    return models.load_classifier(resolved, num_classes=task.num_classes,
                                  sequence_length=run.recipe["sequence_length"])


def _make_student(run, teacher, student, options: dict):
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


def _own_tokenizer(student, teacher) -> bool:
    """Whether a transformer student reads other token ids than the teacher (its vocabulary was trimmed)."""
    if is_word_student(student):
        return False
    return vocabulary_fingerprint(student) != vocabulary_fingerprint(teacher)


def _teacher_cache(teacher, student, config, options: dict, stage_dir: str, train, keyed: bool = False):
    """A TeacherCache of the outputs the active terms need, written once per stage (reused on resume); `keyed`:
    rows keyed by the student's tokenization (its own vocabulary; logits only)."""
    path = os.path.join(stage_dir, "teacher_cache")
    if os.path.exists(os.path.join(path, "meta.json")):
        say(f"distill: reusing the teacher cache {path}")
        cache = TeacherCache(path)
        cache.check_features(encode(train.texts, (student if keyed else teacher).preprocessor))
        return cache
    if keyed:
        return cache_teacher_outputs(teacher, train, path, max_bytes=options["cache_max_bytes"], overwrite=True,
                                     student=student)
    features = encode(train.texts, teacher.preprocessor)
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
