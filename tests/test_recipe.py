"""Recipe validation: errors name the key path, suggest close names, and come before any work."""

import pytest

from tfbertopt.recipe import RecipeError, apply_override, load_recipe, parse_recipe


def _raw(**changes):
    raw = {"name": "t", "model": "demo", "task": "sst2", "data": {"source": "demo"},
           "stages": [{"finetune": {"epochs": 1}}, {"export": {"quantization": ["float32"]}}, "benchmark"]}
    raw.update(changes)
    return raw


def test_defaults_filled():
    recipe = parse_recipe(_raw())
    assert recipe["stages"][0]["finetune"] == {"epochs": 1, "batch_size": 32, "learning_rate": 5e-5,
                                               "weight_decay": 0.01, "warmup_fraction": 0.1, "max_steps": None,
                                               "length_grouping": 20, "keep": "last"}
    assert recipe["stages"][2]["benchmark"]["threads"] == [2, 1]
    assert recipe["sequence_length"] == 128


@pytest.mark.parametrize("raw, message", [
    (_raw(stages=[{"finetune": {"epoch": 1}}]), "stages[0].finetune: unknown key 'epoch' (did you mean 'epochs'?)"),
    (_raw(stages=[{"prun": {}}]), "stages[0]: unknown stage 'prun' (did you mean 'prune'?)"),
    (_raw(stages=[{"prune": {"final_sparsity": 1.0}}]), "stages[0].prune.final_sparsity: must be in [0, 1)"),
    (_raw(stages=[{"prune": {"m_by_n": [4, 2]}}]), "stages[0].prune.m_by_n: expected [N, M] integers"),
    (_raw(stages=[{"structured_prune": {"head_fraction": 1.5}}]), "head_fraction: must be in [0, 1)"),
    (_raw(stages=[{"structured_prune": {"recovery_epochs": -1}}]),
     "stages[0].structured_prune.recovery_epochs: must be >= 0, got -1"),
    (_raw(stages=[{"structured_prune": {"neuron_multiple": 0}}]),
     "stages[0].structured_prune.neuron_multiple: must be >= 1, got 0"),
    (_raw(stages=[{"factorize": {"rank": 4, "recovery_epochs": -2}}]),
     "stages[0].factorize.recovery_epochs: must be >= 0, got -2"),
    (_raw(stages=[{"export": {}}, {"prune": {}}]), "'prune' comes after 'export'"),
    (_raw(stages=[{"finetune": {"epochs": "two"}}]), "stages[0].finetune.epochs: expected int, got str"),
    (_raw(stages=[{"finetune": {"epochs": 0}}]), "stages[0].finetune.epochs: must be >= 1"),
    (_raw(stages=[{"export": {"quantization": ["int2"]}}]), "stages[0].export.quantization: unknown 'int2'"),
    (_raw(stages=[{"finetune": {}, "export": {}}]), "stages[0]: a stage is a mapping with one key"),
    (_raw(stages=["benchmark"]), "an 'export' stage must come before it"),
    (_raw(task="sst3"), "task: Unknown GLUE task 'sst3'"),
    (_raw(data={"source": "s3"}), "data.source: 's3' is not one of"),
    (_raw(modle="x"), "unknown key 'modle' (did you mean 'model'?)"),
    (_raw(stages=[{"prune": {"final_sparsity": None}}]), "stages[0].prune.final_sparsity: no value given (null)"),
    (_raw(stages=[{"export": {"quantization": None}}]), "stages[0].export.quantization: no value given (null)"),
    (_raw(stages=[{"distill": {"teacher": None}}]), "stages[0].distill.teacher: no value given (null)"),
    (_raw(stages=[{"trim_vocabulary": {"fill": True}}]), "stages[0].trim_vocabulary.fill: fills the vocabulary up to "
                                                         "max_tokens; set max_tokens"),
    (_raw(stages=[{"distill": {"keep": "first"}}]), "stages[0].distill.keep: 'first' is not one of last, best"),
    ({"name": "t", "task": "sst2", "stages": ["finetune"]}, "model: required"),
    ([1, 2], "expected a mapping at the top level"),
])
def test_errors_name_the_key_path(raw, message):
    with pytest.raises(RecipeError) as info:
        parse_recipe(raw)
    assert message in str(info.value)


def test_learning_rate_written_without_dot_is_accepted():
    recipe = parse_recipe(_raw(stages=[{"finetune": {"learning_rate": "5e-5"}}]))
    assert recipe["stages"][0]["finetune"]["learning_rate"] == 5e-5


def test_overrides_address_stages_by_name_and_index():
    raw = _raw()
    apply_override(raw, "stages.finetune.epochs=3")
    apply_override(raw, "stages.1.quantization=[float32, dynamic]")
    apply_override(raw, "data.max_dev_examples=10")
    recipe = parse_recipe(raw)
    assert recipe["stages"][0]["finetune"]["epochs"] == 3
    assert recipe["stages"][1]["export"]["quantization"] == ["float32", "dynamic"]
    assert recipe["data"]["max_dev_examples"] == 10
    with pytest.raises(RecipeError, match="has no stage 'prune'"):
        apply_override(_raw(), "stages.prune.final_sparsity=0.8")
    raw = _raw(stages=[{"prune": {}}, "export"])
    apply_override(raw, "stages.prune.final_sparsity=0.9")
    assert parse_recipe(raw)["stages"][0]["prune"]["final_sparsity"] == 0.9
    with pytest.raises(RecipeError, match="expected KEY=VALUE"):
        apply_override(_raw(), "stages.finetune.epochs")


def test_load_recipe_files(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: t\nmodel: demo\ntask: sst2\nstages:\n  - finetune: {epochs: 1}\n")
    assert load_recipe(str(path))["_path"] == str(path)
    path.write_text("name: t\nstages: [finetune\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(str(path))
    with pytest.raises(RecipeError, match="does not exist"):
        load_recipe(str(tmp_path / "missing.yaml"))


def test_yaml_python_tags_are_refused(tmp_path):
    path = tmp_path / "evil.yaml"
    path.write_text("name: !!python/object/apply:os.system ['echo pwned']\nmodel: demo\ntask: sst2\n"
                    "stages: [finetune]\n")
    with pytest.raises(RecipeError, match="not valid YAML"):
        load_recipe(str(path))


def test_shipped_recipes_are_valid():
    from pathlib import Path

    paths = sorted(Path(__file__).resolve().parents[1].glob("recipes/*.yaml"))
    assert paths
    for path in paths:
        load_recipe(str(path))


def test_int8_matmul_after_a_qat_stage_is_refused_when_the_recipe_loads(tmp_path):
    import yaml

    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"name": "r", "model": "demo", "task": "sst2", "stages": [
        {"qat": {"max_steps": 1}}, {"export": {"quantization": ["int8", "int8-matmul"]}}]}))
    with pytest.raises(RecipeError, match=r"stages\[1\].export.quantization: 'int8-matmul' does not run what the "
                                          r"qat stage before it trained \(target 'int8'\)"):
        load_recipe(path)
    path.write_text(yaml.safe_dump({"name": "r", "model": "demo", "task": "sst2", "stages": [
        {"qat": {"target": "int8-matmul"}}, {"export": {"quantization": ["dynamic", "int8"]}}]}))
    with pytest.raises(RecipeError, match=r"'int8' does not run what .* \(target 'int8-matmul'\)"):
        load_recipe(path)
    path.write_text(yaml.safe_dump({"name": "r", "model": "demo", "task": "sst2", "stages": [
        {"qat": {"target": "int4"}}, {"export": {"quantization": ["int4", "int8"]}}]}))
    with pytest.raises(RecipeError, match=r"'int8' does not run what .* \(target 'int4'\)"):
        load_recipe(path)
    path.write_text(yaml.safe_dump({"name": "r", "model": "demo", "task": "sst2", "stages": [
        {"qat": {"target": "int2"}}]}))
    with pytest.raises(RecipeError, match=r"stages\[0\].qat.target: unknown 'int2'"):
        load_recipe(path)
    path.write_text(yaml.safe_dump({"name": "r", "model": "demo", "task": "sst2", "stages": [
        {"qat": {"target": "int8-matmul"}}, {"export": {"quantization": ["int8-matmul"]}}]}))
    assert load_recipe(path)["stages"][0]["qat"]["points"] is None    # the target's points
