"""Mutation fuzzing of recipe files: every corruption of a valid recipe (shipped ones included) either loads to a
validated recipe or raises `RecipeError` (YAML syntax errors wrapped in it); never another exception type (no
UnicodeDecodeError, TypeError, AttributeError, KeyError, RecursionError or a bare yaml/ValueError from deep inside).
Overrides given with --set are fuzzed the same way."""

from pathlib import Path

from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st

from helpers.profiles import examples  # pytest puts tests/ on sys.path

from tfbertopt.recipe import RecipeError, load_recipe

EXAMPLES = 250   # max_examples of each fuzzer below (counted in the report of issue 8)
SHIPPED = sorted((Path(__file__).resolve().parents[1] / "recipes").glob("*.yaml"))
SOURCES = [p.read_bytes() for p in SHIPPED] + [
    b"name: t\nmodel: demo\ntask: sst2\ndata: {source: demo}\nstages:\n  - finetune: {epochs: 1}\n"
    b"  - prune: {final_sparsity: 0.5, m_by_n: [2, 4]}\n  - export: {quantization: [float32, int8]}\n"
    b"  - benchmark\n",
]
# Validating a distill stage imports TensorFlow, which raises the recursion limit; do it before Hypothesis runs
# (it warns when the limit changes during a test).
for _path in SHIPPED:
    load_recipe(str(_path))
TOKENS = st.sampled_from([
    ": ", "- ", "-", "[", "]", "{", "}", ",", "&a ", "*a", "<<: *a\n", "!!binary ", "!!set ", "!!timestamp ",
    "!!python/object:os.system ", "!!float ", "!!int ", "!!str ", "!!map ", "!!seq ", "!!omap ", "!!null ", "!custom ",
    "2001-13-45", "2001-02-03", "12:30:45", "~", "null", ".inf", "-.inf", ".nan", "0x1F", "1e400", "0o17", "yes",
    "no", "on", "\t", "  ", "\n", "\n  ", "#", "'", '"', "\\", "?", "|", ">", "%YAML 1.1\n", "---\n", "...\n", "@",
    "`", "\u00e9", "\u2028", "\ufeff", "\x00", "\x85", "[[[[[[[[[[", "{a: {b: {c: {d: [1, [2, [3]]]}}}}",
])
RAW = st.sampled_from([b"\xff", b"\xfe\xff", b"\xc3(", b"\xed\xa0\x80", b"\x80", b"\xef\xbb\xbf", b"\x00\x00",
                       b"\xf0\x28\x8c\xbc"])
SCALARS = st.one_of(st.integers(-10 ** 20, 10 ** 20).map(str), st.floats().map(str),
                    st.sampled_from(["true", "false", "null", "[]", "{}", "''", "[1, 2]", "{a: 1}", "-1", "0",
                                     "1.5", "float32", "sst2", "demo", "prune", "x" * 300, "1e-5", "5e-5"]))


@st.composite
def mutated_recipe(draw):
    data = draw(st.sampled_from(SOURCES))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["token", "raw", "flip", "delete", "truncate", "value", "indent", "dup"]))
        at = draw(st.integers(0, len(data)))
        if kind == "token":
            data = data[:at] + draw(TOKENS).encode("utf-8") + data[at:]
        elif kind == "raw":
            data = data[:at] + draw(RAW) + data[at:]
        elif kind == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
        elif kind == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 20)):]
        elif kind == "truncate":
            data = data[:at]
        elif kind in ("value", "indent", "dup"):
            lines = data.split(b"\n")
            i = draw(st.integers(0, len(lines) - 1))
            if kind == "value" and b":" in lines[i]:
                key = lines[i].split(b":", 1)[0]
                lines[i] = key + b": " + draw(SCALARS).encode("utf-8")
            elif kind == "indent":
                lines[i] = b" " * draw(st.integers(0, 6)) + lines[i].lstrip()
            else:
                lines.insert(i, lines[i])
            data = b"\n".join(lines)
        event(kind)
    return data


def _load(path, overrides=()):
    try:
        recipe = load_recipe(str(path), overrides)
    except RecipeError as err:   # any other exception type fails the test
        assert str(err)
        event("RecipeError")
        return None
    event("loaded")
    assert isinstance(recipe, dict) and isinstance(recipe["stages"], list) and recipe["_path"]
    return recipe


def test_shipped_recipes_are_in_the_corpus():
    assert len(SOURCES) >= 2
    for source in SOURCES:
        assert isinstance(source, bytes) and source


@settings(max_examples=examples(EXAMPLES), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=mutated_recipe())
@example(data=b"\xffname: t\nmodel: demo\ntask: sst2\nstages: [finetune]\n")     # was a UnicodeDecodeError
@example(data=b"name: 2001-02-30\nmodel: demo\ntask: sst2\nstages: [finetune]\n")  # a ValueError inside PyYAML
@example(data=b"name: !!int\nmodel: demo\ntask: sst2\nstages: [finetune]\n")      # an IndexError inside PyYAML
def test_mutated_recipe_files_load_or_raise_recipe_error(tmp_path, data):
    path = tmp_path / "fuzzed.yaml"
    path.write_bytes(data)
    _load(path)


OVERRIDE_KEYS = st.sampled_from(["name", "model", "task", "data.source", "data.max_dev_examples", "sequence_length",
                                 "stages", "stages.0", "stages.finetune.epochs", "stages.1.quantization",
                                 "stages.prune.m_by_n", "stages.9.x", "stages.-1.epochs", "a.b.c", "", ".", "..",
                                 "stages.export", "stages.finetune", "data", "stages.0.finetune"])


@settings(max_examples=examples(EXAMPLES), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(source=st.sampled_from(SOURCES), overrides=st.lists(
    st.one_of(st.tuples(OVERRIDE_KEYS, st.one_of(SCALARS, TOKENS)).map(lambda kv: f"{kv[0]}={kv[1]}"),
              st.text(max_size=30)), max_size=3))
@example(source=SOURCES[0], overrides=["name=!!int "])              # was an IndexError
@example(source=SOURCES[0], overrides=["name=[unclosed"])            # was a bare yaml ParserError
@example(source=SOURCES[0], overrides=["name.first=1"])              # was a TypeError (a string is no mapping)
@example(source=SOURCES[0], overrides=["stages..epochs=1"])
def test_fuzzed_overrides_load_or_raise_recipe_error(tmp_path, source, overrides):
    path = tmp_path / "recipe.yaml"
    path.write_bytes(source)
    _load(path, overrides)
