"""The `Stage` base class: one object per recipe stage holds its option schema, its checks, how it runs and the tags
its model carries into result rows; `tfbertopt.stages.STAGES` registers one of each.

An option schema maps each option to `(default, type or tuple of allowed values, description)`; `fill` checks a
mapping against one and fills the defaults (the recipe's top level and `data` use it too). Errors are `RecipeError`s
whose message starts with the key path.

Example:

>>> from tfbertopt.stages import STAGES
>>> STAGES["benchmark"].parse("stages[2].benchmark", {"latency_runs": 10})
{'latency_runs': 10, 'results': None, 'threads': [2, 1]}
>>> STAGES["prune"].parse("stages[1].prune", {"final_sparsity": 1.0})
Traceback (most recent call last):
...
tfbertopt.recipe.RecipeError: stages[1].prune.final_sparsity: must be in [0, 1), got 1.0
"""

from __future__ import annotations

import copy
import difflib
import os
import time
from typing import ClassVar

from tfbertopt.distribute import replace_atomically
from tfbertopt.kernels import count_params


class RecipeError(ValueError):
    """A malformed recipe; the message starts with the key path of the problem."""

    # Defined here, below the stages that raise it; its public name is tfbertopt.recipe.RecipeError.
    __module__ = "tfbertopt.recipe"


def unknown_key(path: str, key: str, known) -> RecipeError:
    """The error for an unknown key, suggesting the closest known one."""
    close = difflib.get_close_matches(str(key), list(known), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return RecipeError(f"{path}: unknown key '{key}'{hint}; known keys: {', '.join(known)}")


def check_value(path: str, value, kind):
    """`value` checked against a schema type: a type, a tuple of allowed values, or None (anything)."""
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


def fill(path: str, given, schema: dict) -> dict:
    """`given` (a mapping, or None for none) checked against `schema`, with the defaults of the options not given."""
    if given is None:
        given = {}
    if not isinstance(given, dict):
        raise RecipeError(f"{path}: expected a mapping of options, got {type(given).__name__}")
    out = {}
    for key, value in given.items():
        if key not in schema:
            raise unknown_key(path, key, schema)
        where = f"{path}.{key}" if path else key
        default, kind, _ = schema[key]
        if value is None and default is not None:     # `key:` with no value, or `key: null`
            raise RecipeError(f"{where}: no value given (null); leave the key out to use its default, {default!r}")
        out[key] = check_value(where, value, kind)
    for key, (default, _, _) in schema.items():
        out.setdefault(key, copy.deepcopy(default))
    return out


def say(message: str) -> None:
    """A progress line of a recipe run."""
    print(f"[tfbertopt {time.strftime('%H:%M:%S')}] {message}", flush=True)


def resolve_path(recipe: dict, value: str | None) -> str | None:
    """Paths in a recipe are relative to the working directory, or failing that to the recipe file."""
    if value is None:
        return None
    if os.path.isabs(value) or os.path.exists(value) or "_path" not in recipe:
        return value
    candidate = os.path.join(os.path.dirname(recipe["_path"]), value)
    return candidate if os.path.exists(candidate) else value


class Stage:
    """One recipe stage. A subclass sets the class attributes below and a docstring, implements `run`, and where
    needed `check` (what the option types cannot say) and `tags`.

    - `name`: the stage's key in a recipe (`- finetune: {epochs: 2}`).
    - `options`: its schema, option -> (default, type or tuple of allowed values, description); the recipe reference
      in docs/recipes.md is generated from it (`tfbertopt.docs_gen`).
    - `allowed`: option -> the reference's "type / allowed values" text, where the type alone says too little.
    - `fractions`: options that must lie in [0, 1); `counts`: options that must be >= 1 when set; `non_negative`:
      options that must be >= 0 (e.g. recovery epochs, where 0 means none).
    - `trains`: the stage makes (usually trains) and saves a model; it must come before `export`, and a `distill`
      teacher may name it (`stage:N`).
    """

    name: ClassVar[str] = ""
    options: ClassVar[dict] = {}
    allowed: ClassVar[dict] = {}
    fractions: ClassVar[tuple] = ()
    counts: ClassVar[tuple] = ()
    non_negative: ClassVar[tuple] = ()
    trains: ClassVar[bool] = False

    def parse(self, path: str, given) -> dict:
        """The stage's options from a recipe (`path` is its key path, e.g. `stages[1].prune`): types checked,
        defaults filled, then `check`; RecipeError on the first problem."""
        options = fill(path, given, self.options)
        for key in self.fractions:
            if not 0.0 <= options[key] < 1.0:
                raise RecipeError(f"{path}.{key}: must be in [0, 1), got {options[key]}")
        self.check(path, options)
        for key in self.counts:
            if options[key] is not None and options[key] < 1:
                raise RecipeError(f"{path}.{key}: must be >= 1, got {options[key]}")
        for key in self.non_negative:
            if options[key] < 0:
                raise RecipeError(f"{path}.{key}: must be >= 0, got {options[key]}")
        return options

    def check(self, path: str, options: dict) -> None:
        """Checks of filled options beyond their types, raising RecipeError with the key path; may normalise
        `options` in place."""

    def run(self, run, options: dict, stage_dir: str, train, dev, index: int) -> dict:
        """Runs the stage on `run` (the runner's `Run`: `run.model` is the model the previous stage produced, and
        the stage replaces it with its own) and returns its outputs, recorded in the run's state.json. `stage_dir`
        is its folder, `train` and `dev` the task's Examples, `index` its place in the recipe."""
        raise NotImplementedError(f"stage {self.name} has no run")

    def tags(self, options: dict) -> list[str]:
        """Tags of the model this stage makes (outputs["tags"]); the benchmark stage puts them on every result row
        of the exported model."""
        return []

    def save_model(self, run, stage_dir: str, outputs: dict) -> dict:
        """`outputs` with the path of `run.model`, saved in `stage_dir` (atomically: a killed run leaves no half
        file), and its parameter count."""
        path = os.path.join(stage_dir, "model.keras")
        replace_atomically(run.model.save, path)
        outputs["model"] = path
        outputs["params"] = count_params(run.model)
        return outputs

    def __repr__(self) -> str:
        return f"<stage {self.name}>"
