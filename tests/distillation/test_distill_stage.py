"""The recipe `distill` stage: validation, the shipped distillation recipes, and tiny end-to-end runs that resume."""

import json
from pathlib import Path

import pytest
import yaml

from tfbertopt.recipe import RecipeError, load_recipe, parse_recipe
from tfbertopt.runner import run_recipe

pytestmark = [pytest.mark.filterwarnings("ignore:Your input ran out of data"),
              pytest.mark.usefixtures("stub_int8_peak")]   # a fixed int8 peak in benchmark stages

RECIPES = Path(__file__).resolve().parents[2] / "recipes"
BASE = {"name": "t", "model": "demo", "task": "sst2", "sequence_length": 16,
        "data": {"source": "demo", "demo_train_examples": 96}}
FINETUNE = {"finetune": {"epochs": 1, "batch_size": 32, "learning_rate": 1e-3, "max_steps": 2}}


def _raw(*stages):
    return dict(BASE, stages=[FINETUNE, *stages])


def _write(tmp_path, recipe, name="r.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


@pytest.mark.parametrize("name", ["sst2_distilbert_style", "sst2_tinybert_two_stage", "sst2_pkd",
                                  "sst2_bilstm_tang"])
def test_shipped_distillation_recipes_validate_and_cite_their_paper(name):
    path = RECIPES / f"{name}.yaml"
    recipe = load_recipe(str(path))
    stages = [next(iter(s)) for s in recipe["stages"]]
    assert stages[0] == "finetune" and "distill" in stages and stages[-2:] == ["export", "benchmark"]
    header = " ".join(path.read_text().split("\nname:")[0].replace("#", " ").split())
    assert "et al." in header and "as reported in the paper" in header


def test_distill_defaults_and_normalised_config():
    options = parse_recipe(_raw({"distill": {}}))["stages"][1]["distill"]
    assert options["teacher"] == "previous" and options["student"] == "every_other" and options["cache"] is False
    assert options["distillation"]["logits"] == "kl" and options["distillation"]["hard_label_weight"] == 0.5


@pytest.mark.parametrize("distill, message", [
    ({"student": "bilstn"}, "distill.student: unknown student 'bilstn' (did you mean 'bilstm'?)"),
    ({"student": [0, -1]}, "distill.student: a list of 0-based teacher layers"),
    ({"student": {"hidden_dim": 30, "num_layers": 2, "num_heads": 4, "intermediate_dim": 8}}, "divisible"),
    ({"student": {"hidden_dim": 32, "num_layers": 2}}, "missing ['num_heads', 'intermediate_dim']"),
    ({"student": {"hidden": 32}}, "unknown key 'hidden' (did you mean 'hidden_dim'?)"),
    ({"student": "bilstm", "student_options": {"unit": 3}}, "student_options: unknown key 'unit'"),
    ({"student_options": {"units": 3}}, "the layers student takes no options"),
    ({"distillation": {"logits": "kld"}}, "distill.distillation: unknown logits loss 'kld'"),
    ({"distillation": {"temprature": 2}}, "unknown DistillationConfig fields ['temprature']"),
    ({"student": "cnn", "distillation": {"attention": "kl", "attention_weight": 1}}, "the cnn student is not a "
                                                                                     "transformer"),
    ({"student": "previous"}, "student and teacher are both 'previous'"),
    ({"teacher": "stage:x"}, "'stage:N' takes a 0-based stage index"),
    ({"teacher": "stage:1"}, "must name an earlier stage that saves a model"),
    ({"epochs": 0}, "distill.epochs: must be >= 1"),
])
def test_bad_distill_options(distill, message):
    with pytest.raises(RecipeError) as info:
        parse_recipe(_raw({"distill": distill}))
    assert message in str(info.value)


def test_bilstm_distillation_from_a_cache_end_to_end_and_resume(tmp_path, capsys):
    from tfbertopt.distillation import LstmStudent

    out = tmp_path / "out"
    # First only the teacher's fine-tuning; then the full recipe resumes from it.
    run_recipe(load_recipe(_write(tmp_path, _raw())), str(out))
    recipe = _raw({"distill": {"student": "bilstm", "student_options": {"units": 8, "hidden_units": 16},
                               "distillation": {"hard_label_weight": 0.0, "logits": "mse", "logits_weight": 1.0},
                               "epochs": 2, "max_steps": 2, "learning_rate": 1e-3, "cache": True}},
                  {"export": {"quantization": ["float32", "dynamic"], "verify_examples": 16}},
                  {"benchmark": {"latency_runs": 2, "threads": [1]}})
    capsys.readouterr()
    run = run_recipe(load_recipe(_write(tmp_path, recipe)), str(out))
    printed = capsys.readouterr().out
    assert "stage 00_finetune: already finished" in printed and "teacher cache: 96 examples" in printed
    assert isinstance(run.model, LstmStudent)
    state = json.loads((out / "state.json").read_text())["finished"]
    distill = state["01_distill"]
    assert distill["student"] == "bilstm" and distill["cached_teacher"] is True
    assert distill["tags"] == ["distill", "logits-kd", "bilstm"]
    assert len(distill["history"]["kd_logits_loss"]) == 2 and "hard_loss" not in distill["history"]
    assert (out / "01_distill" / "teacher_cache" / "logits.npy").exists()
    rows = {r["variant"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    assert rows["float32"]["tags"] == ["distill", "logits-kd", "bilstm"] and rows["float32"]["verified"]
    assert rows["dynamic"]["tags"][-1] == "ptq-dynamic"
    # Resuming a finished run reloads the saved student (a registered tfbertopt class) without retraining.
    capsys.readouterr()
    again = run_recipe(load_recipe(_write(tmp_path, recipe)), str(out))
    printed = capsys.readouterr().out
    assert printed.count("already finished, skipping") == 4 and "01_distill/model.keras" in printed
    assert isinstance(again.model, LstmStudent)


@pytest.mark.filterwarnings("ignore:Gradients do not exist")   # stage 1 trains no head: expected
def test_tinybert_two_stage_end_to_end(tmp_path):
    from tfbertopt.kernels import encoder_shapes

    recipe = _raw(
        {"distill": {"student": {"hidden_dim": 16, "num_layers": 1, "num_heads": 2, "intermediate_dim": 32},
                     "distillation": {"hard_label_weight": 0.0, "logits": None, "logits_weight": 0.0,
                                      "hidden": "mse", "hidden_weight": 1.0, "attention": "mse",
                                      "attention_weight": 1.0, "embedding_weight": 1.0},
                     "epochs": 1, "max_steps": 2, "learning_rate": 1e-3}},
        {"distill": {"teacher": "stage:0", "student": "previous",
                     "distillation": {"hard_label_weight": 0.0, "logits": "soft_ce", "logits_weight": 1.0,
                                      "temperature": 1.0},
                     "epochs": 1, "max_steps": 2, "learning_rate": 1e-3, "cache": True}},
        {"export": {"quantization": ["float32"], "verify_examples": 16}})
    out = tmp_path / "out"
    run = run_recipe(load_recipe(_write(tmp_path, recipe)), str(out))
    state = json.loads((out / "state.json").read_text())["finished"]
    assert {"kd_hidden_loss", "kd_attention_loss", "kd_embedding_loss"} <= set(state["01_distill"]["history"])
    assert set(state["01_distill"]["tags"]) == {"distill", "hidden-kd", "attention-kd"}
    assert "kd_logits_loss" in state["02_distill"]["history"] and state["02_distill"]["cached_teacher"]
    assert encoder_shapes(run.model) == [{"hidden_dim": 16, "num_heads": 2, "head_dim": 8, "intermediate_dim": 32}]
    assert (out / "03_export" / "model_float32.tflite").exists()


TRIM = {"trim_vocabulary": {"max_tokens": 40}}
KEYED = {"distill": {"student": "previous", "teacher": "stage:0", "cache": True, "epochs": 1, "max_steps": 2,
                     "augment": {"copies": 1}}}


@pytest.mark.parametrize("change", [{"cache": False}, {"distillation": {"hidden": "mse", "hidden_weight": 1.0}}])
def test_a_student_trimmed_after_its_teacher_needs_cached_logits(change):
    distill = {"distill": dict(KEYED["distill"], **change)}
    with pytest.raises(RecipeError, match=r"stages\[2\].distill: the student's vocabulary was trimmed "
                                          r"\(stages\[1\]\) and the teacher's was not"):
        parse_recipe(_raw(TRIM, distill))
    parse_recipe(_raw(TRIM, {"distill": dict(distill["distill"], teacher="stage:1")}))   # trimmed teacher: fine


def test_trimmed_student_distilled_from_cached_logits_end_to_end(tmp_path, capsys):
    out = str(tmp_path / "run")
    run = run_recipe(load_recipe(_write(tmp_path, _raw(TRIM, KEYED))), out)
    meta = json.loads((Path(out) / "02_distill" / "teacher_cache" / "meta.json").read_text())
    assert meta["keyed_by"] and meta["vocabulary_size"] == 40 and meta["logits"] and not meta["hidden_layers"]
    assert run.state["finished"]["02_distill"]["cached_teacher"]
    capsys.readouterr()
    run_recipe(load_recipe(_write(tmp_path, _raw(TRIM, KEYED))), out)   # resumes: nothing to redo
    assert "02_distill: already finished" in capsys.readouterr().out
