"""One object per recipe stage: every registered stage has a schema, a run and documentation, and the recipe
validation, the runner and the docs generator all read the one registry. The packages import each other without
circles."""

import ast
from pathlib import Path
from typing import ClassVar

import pytest

from tfbertopt import docs_gen, recipe, runner
from tfbertopt.stages import STAGES
from tfbertopt.stages.base import RecipeError, Stage

PACKAGE = Path(__file__).resolve().parent.parent / "tfbertopt"


@pytest.mark.parametrize("name", list(STAGES))
def test_every_stage_has_a_schema_a_run_and_documentation(name):
    stage = STAGES[name]
    assert isinstance(stage, Stage) and stage.name == name
    assert type(stage).run is not Stage.run, f"stage {name} has no run of its own"
    assert type(stage).__doc__, f"stage {name} has no docstring"
    assert stage.options, f"stage {name} has no options"
    for key, (default, kind, description) in stage.options.items():
        assert description, f"{name}.{key} has no description"
        assert kind is None or isinstance(kind, (type, tuple)), f"{name}.{key}: {kind!r} is not a schema type"
    named = set(stage.allowed) | set(stage.fractions) | set(stage.counts)
    assert named <= set(stage.options), f"{name} names options it does not have: {named - set(stage.options)}"
    assert f"### Stage `{name}`" in docs_gen.recipe_reference()


def test_recipe_runner_and_docs_read_one_registry(monkeypatch):
    assert recipe.STAGES is STAGES and runner.STAGES is STAGES and docs_gen.STAGES is STAGES
    assert recipe.TRAINING_STAGES == tuple(n for n, s in STAGES.items() if s.trains)

    class Probe(Stage):
        """A stage registered only in STAGES."""

        name = "probe"
        options: ClassVar[dict] = {"level": (3, int, "how much")}
        counts = ("level",)

        def run(self, run, options, stage_dir, train, dev, index):
            return {"level": options["level"]}

    monkeypatch.setitem(STAGES, "probe", Probe())
    raw = {"name": "t", "model": "demo", "task": "sst2", "stages": [{"probe": {}}]}
    assert recipe.parse_recipe(raw)["stages"] == [{"probe": {"level": 3}}]
    with pytest.raises(RecipeError, match=r"stages\[0\]\.probe\.level: must be >= 1, got 0"):
        recipe.parse_recipe({**raw, "stages": [{"probe": {"level": 0}}]})
    assert "### Stage `probe`" in docs_gen.recipe_reference()


def _package_of(module: str) -> str | None:
    """`tfbertopt.X` for a module inside tfbertopt.X (a subpackage or a top-level module), else None."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "tfbertopt" and len(parts) > 1 else None


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """tfbertopt.X -> {tfbertopt.Y it imports}, from every import statement (module top or not) under `root`."""
    graph = {}
    for path in sorted(root.rglob("*.py")):
        module = ".".join(("tfbertopt",) + path.relative_to(root).with_suffix("").parts).removesuffix(".__init__")
        source = _package_of(module)
        if source is None:
            continue
        targets = graph.setdefault(source, set())
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                # `from tfbertopt import models` imports the module tfbertopt.models (and __version__ nothing)
                names = [node.module] if node.module != "tfbertopt" else \
                    [f"tfbertopt.{a.name}" for a in node.names
                     if (root / f"{a.name}.py").exists() or (root / a.name).is_dir()]
            targets.update(p for p in map(_package_of, names) if p and p != source)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import circles of `graph` (one path per circle found by depth-first search)."""
    found, state = [], {}

    def visit(node, path):
        state[node] = "open"
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                found.append(path[path.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, path + [nxt])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_no_import_circles_between_packages():
    graph = import_graph()
    assert graph["tfbertopt.recipe"] >= {"tfbertopt.stages"} and "tfbertopt.runner" not in graph["tfbertopt.stages"]
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]   # the check can fail
    assert not cycles(graph), f"import circles between tfbertopt packages: {cycles(graph)}"
