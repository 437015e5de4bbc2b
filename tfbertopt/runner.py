"""Runs a validated recipe stage by stage, handing each stage's model to the next; each stage is run by its object
in the registry `tfbertopt.stages.STAGES`.

With `distribute: {strategy: multi_worker}` every worker runs the recipe under one MultiWorkerMirroredStrategy
(`tfbertopt.distribute`); only the chief writes the run folder (the others write into scratch folders), and every
file is replaced atomically, so a worker killed at any moment leaves the outputs of the finished stages whole.

Every finished stage is recorded in `<output_dir>/state.json` with its outputs (models are saved as `.keras`), so
running the same recipe again resumes after the last finished stage; fine-tuning itself resumes at its epoch
through `BackupAndRestore`. Outputs: per-stage folders, the .tflite files, `report.json` and `report.md`.

Example (the offline demo: a tiny BERT on synthetic data, about a minute):

>>> from tfbertopt.runner import run_recipe   # doctest: +SKIP
>>> run_recipe(load_recipe("recipes/demo.yaml"))   # doctest: +SKIP
"""

from __future__ import annotations

import contextlib
import json
import os
import time

from tfbertopt import models, saving
from tfbertopt.data.demo import demo_examples, demo_vocabulary
from tfbertopt.data.glue import load_glue
from tfbertopt.data.tasks import get_task
from tfbertopt.distribute import local_path, make_strategy, write_json_atomically
from tfbertopt.export.litert import ExportError
from tfbertopt.kernels import UnsupportedModelError, count_params
from tfbertopt.stages import STAGES
from tfbertopt.stages.base import resolve_path, say


class StageError(RuntimeError):
    """A recipe stage that cannot run on this model or with these options; the message names the stage and why."""


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
        data_dir = resolve_path(recipe, data["dir"])
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
    source = resolve_path(recipe, recipe["model"])
    say(f"model: {source}")
    return models.load_classifier(source, num_classes=task.num_classes, sequence_length=recipe["sequence_length"])


class Run:
    """State of one recipe run: its folder, finished stages, and the current model. `dir` is the run folder every
    worker reads; `write_dir` is where this process writes it (the same folder, but a scratch copy on multi-worker
    training's non-chief workers)."""

    def __init__(self, recipe: dict, output_dir: str | None = None):
        self.recipe = recipe
        self.dir = output_dir or recipe["output_dir"] or os.path.join("runs", recipe["name"])
        self.write_dir = local_path(self.dir)
        os.makedirs(self.write_dir, exist_ok=True)
        self.state_path = os.path.join(self.dir, "state.json")
        self.state = {"finished": {}}
        if os.path.exists(self.state_path):
            with open(self.state_path) as f:
                self.state = json.load(f)
        self.model = None

    def stage_dir(self, i: int, name: str) -> str:
        path = os.path.join(self.write_dir, f"{i:02d}_{name}")
        os.makedirs(path, exist_ok=True)
        return path

    def finish(self, key: str, outputs: dict) -> None:
        self.state["finished"][key] = outputs
        write_json_atomically(self.state, os.path.join(self.write_dir, "state.json"), indent=2)


def run_recipe(recipe: dict, output_dir: str | None = None) -> Run:
    """Runs every stage of a validated recipe (see `tfbertopt.recipe.load_recipe`), resuming finished ones, under the
    strategy of its `distribute` option."""
    strategy = make_strategy(recipe.get("distribute", {}).get("strategy", "none"))  # before any other TF op
    with strategy.scope() if strategy is not None else contextlib.nullcontext():
        return _run_stages(recipe, output_dir)


def _run_stages(recipe: dict, output_dir: str | None) -> Run:
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
        try:
            outputs = STAGES[name].run(run, options, run.stage_dir(i, name), train, dev, i)
        except (UnsupportedModelError, ValueError, ExportError) as e:    # the method refuses this model or options
            raise StageError(f"stage {key} cannot run: {e}") from e
        outputs["seconds"] = round(time.time() - started, 1)
        run.finish(key, outputs)
        say(f"stage {key}: done in {outputs['seconds']:.0f} s")
    return run
