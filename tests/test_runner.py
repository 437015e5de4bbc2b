"""The recipe runner end to end on the offline demo, including resume after a finished stage."""

import json

import pytest
import yaml

from tfbertopt.recipe import load_recipe
from tfbertopt.runner import run_recipe

# The benchmark stage's int8 matmul peak is a fixed number here (conftest.stub_int8_peak); its measurement is tested
# by tfbertopt.bench.latency's doctest.
pytestmark = pytest.mark.usefixtures("stub_int8_peak")

RECIPE = {
    "name": "t", "model": "demo", "task": "sst2", "sequence_length": 16,
    "data": {"source": "demo", "demo_train_examples": 128},
    "stages": [{"finetune": {"epochs": 1, "batch_size": 32, "learning_rate": 1e-3}},
               {"export": {"quantization": ["float32", "dynamic"], "verify_examples": 32}},
               {"benchmark": {"latency_runs": 2, "threads": [1]}}],
}


@pytest.fixture(scope="module")
def finetuned(tmp_path_factory):
    """RECIPE's fine-tuned demo model as a `.keras` file: the recipes that test a later stage start from it (a
    recipe's `model` may be a .keras file) instead of fine-tuning their own; the demo test runs the finetune stage."""
    folder = tmp_path_factory.mktemp("finetuned")
    recipe = dict(RECIPE, stages=RECIPE["stages"][:1])
    run_recipe(load_recipe(_write(folder, recipe)), str(folder / "out"))
    return str(folder / "out" / "00_finetune" / "model.keras")


def _write(tmp_path, recipe):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_demo_recipe_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "out"
    run_recipe(load_recipe(_write(tmp_path, RECIPE)), str(out))
    report = json.loads((out / "report.json").read_text())
    variants = {r["variant"]: r for r in report["rows"]}
    assert set(variants) == {"float32", "dynamic"}
    assert variants["float32"]["tags"] == ["baseline", "teacher", "finetune"]
    assert variants["float32"]["baseline"] is None and variants["dynamic"]["baseline"] == "float32"
    assert variants["float32"]["verified"] is True
    assert variants["dynamic"]["tflite_mb"] < variants["float32"]["tflite_mb"]
    assert report["int8_peak_gmacs"] == 400.0   # the stubbed peak reaches the report
    assert (out / "00_finetune" / "model.keras").exists()
    assert set(json.loads((out / "state.json").read_text())["finished"]) == {"00_finetune", "01_export",
                                                                              "02_benchmark"}
    stage, = report["stages"]          # the stage table: one training stage, its parameters and dev metric
    assert stage["stage"] == "00_finetune" and stage["x_fewer_params"] == 1.0 and 0 <= stage["dev_accuracy"] <= 1
    assert "## Stages" in (out / "report.md").read_text()
    capsys.readouterr()
    # A second run resumes: every stage is skipped and the fine-tuned model is reloaded, not retrained.
    run_recipe(load_recipe(_write(tmp_path, RECIPE)), str(out))
    printed = capsys.readouterr().out
    assert printed.count("already finished, skipping") == 3
    assert "loading" in printed and "model.keras" in printed


def test_missing_data_dir_fails_before_training(tmp_path):
    recipe = dict(RECIPE, model="minilm-l6", data={"dir": str(tmp_path / "nope")})
    with pytest.raises(FileNotFoundError, match="nope"):
        run_recipe(load_recipe(_write(tmp_path, recipe)), str(tmp_path / "out"))


def test_pruning_stages_in_a_recipe(tmp_path):
    from tfbertopt.kernels import encoder_shapes
    from tfbertopt.saving import load_model

    recipe = dict(RECIPE, stages=[
        {"prune": {"final_sparsity": 0.5, "schedule": "constant", "max_steps": 4, "frequency": 2}},
        {"layerdrop": {"rate": 0.2, "drop_layers": [2], "max_steps": 2}},
        {"structured_prune": {"head_fraction": 0.5, "neuron_fraction": 0.25, "importance_batches": 2,
                              "max_steps": 2}},
        {"export": {"quantization": ["float32"]}},
    ])
    out = tmp_path / "out"
    run = run_recipe(load_recipe(_write(tmp_path, recipe)), str(out))
    state = json.loads((out / "state.json").read_text())["finished"]
    assert state["00_prune"]["sparsity"] == pytest.approx(0.5)
    assert state["01_layerdrop"]["plan"].startswith("layers 1/2")
    assert encoder_shapes(run.model) == [{"hidden_dim": 64, "num_heads": 1, "head_dim": 32,
                                          "intermediate_dim": 96}]
    assert encoder_shapes(load_model(state["02_structured_prune"]["model"])) == encoder_shapes(run.model)
    assert (out / "03_export" / "model_float32.tflite").exists()


def test_structured_prune_that_only_drops_layers_ranks_nothing(tmp_path, finetuned, monkeypatch):
    from tfbertopt.kernels import encoder_shapes
    from tfbertopt.saving import load_model
    from tfbertopt.stages import structured_prune

    def no_ranking(*args, **kwargs):
        raise AssertionError("importance scored with nothing to rank")

    monkeypatch.setattr(structured_prune, "structure_importance", no_ranking)
    recipe = dict(RECIPE, model=finetuned, stages=[
        {"structured_prune": {"head_fraction": 0.0, "neuron_fraction": 0.0, "drop_layers": [1],
                              "recovery_epochs": 0}}])
    run = run_recipe(load_recipe(_write(tmp_path, recipe)), str(tmp_path / "out"))
    before = encoder_shapes(load_model(finetuned))
    assert encoder_shapes(run.model) == before[1:]
    finished = json.loads((tmp_path / "out" / "state.json").read_text())["finished"]["00_structured_prune"]
    assert finished["tags"] == ["layers", "structured", "shrink"]


def test_factorize_stage_embeds_svds_shares_recovers_and_tags(tmp_path, finetuned):
    from tfbertopt.kernels import encoder_layers
    from tfbertopt.saving import load_model

    recipe = dict(RECIPE, model=finetuned, stages=[
        {"factorize": {"embedding_dim": 8, "param_fraction": 0.5, "share": "pairs", "recovery_epochs": 1,
                       "distill_recovery": True, "learning_rate": 1e-3}},
        {"export": {"quantization": ["float32"], "verify_examples": 32}},
        {"benchmark": {"latency_runs": 2, "threads": [1]}}])
    out = tmp_path / "out"
    run_recipe(load_recipe(_write(tmp_path, recipe)), str(out))
    state = json.loads((out / "state.json").read_text())["finished"]
    stage = state["00_factorize"]
    assert stage["params_after"] < stage["params_before"]
    model = load_model(stage["model"])
    assert model.backbone.embedding_dim == 8 and len(encoder_layers(model)) == 1
    assert any(r.part for r in __import__("tfbertopt.kernels").kernels.find_kernels(model, roles=["ffn"]))
    row = json.loads((out / "report.json").read_text())["rows"][0]
    assert row["tags"][:5] == ["embedding-factorization", "sharing", "svd", "distill", "logits-kd"]
    assert row["verified"] is True


@pytest.mark.parametrize("options, message", [
    ({}, "nothing to do"),
    ({"rank": 4, "energy": 0.9}, "one SVD rule"),
    ({"param_fraction": 1.5}, "param_fraction: must be in"),
    ({"share": "triples"}, "share: expected"),
    ({"embedding_dim": 0}, "embedding_dim: must be >= 1"),
    ({"share": "all", "share_parts": ["heads"]}, "share_parts: a non-empty subset"),
])
def test_bad_factorize_options_are_named(tmp_path, options, message):
    from tfbertopt.recipe import RecipeError

    recipe = dict(RECIPE, stages=[{"factorize": options}])
    with pytest.raises(RecipeError, match=message):
        load_recipe(_write(tmp_path, recipe))


def test_qat_stage_then_int8_export(tmp_path, finetuned):
    from tfbertopt.quantization import activation_ranges, is_quantized
    from tfbertopt.saving import load_model

    recipe = dict(RECIPE, model=finetuned, stages=[
        {"qat": {"max_steps": 3, "calibration_steps": 16, "distill": True}},
        {"export": {"quantization": ["int8"], "verify_examples": 32, "min_agreement": 0.9,
                    "calibration_steps": 16}},
        {"benchmark": {"latency_runs": 2, "threads": [1]}}])
    out = tmp_path / "out"
    run_recipe(load_recipe(_write(tmp_path, recipe)), str(out))
    model = load_model(str(out / "00_qat" / "model.keras"))
    assert is_quantized(model) and len(activation_ranges(model)) == 2 * 14 + 4
    row, = json.loads((out / "report.json").read_text())["rows"]
    assert row["tags"][0] == "qat" and "ptq-int8" in row["tags"] and row["verified"] is True
    assert row["float_ops"] >= 0


@pytest.mark.parametrize("target", ["int4", "dynamic-int4-tables"])
def test_qat_stage_for_int4_then_its_export(tmp_path, finetuned, target):
    from tfbertopt.quantization import activation_ranges, quantization_config
    from tfbertopt.saving import load_model

    recipe = dict(RECIPE, model=finetuned, stages=[
        {"qat": {"target": target, "max_steps": 2, "calibration_steps": 8}},
        {"export": {"quantization": [target], "verify_examples": 32, "force": True}}])
    out = tmp_path / "out"
    run_recipe(load_recipe(_write(tmp_path, recipe)), str(out))
    model = load_model(str(out / "00_qat" / "model.keras"))
    config = quantization_config(model)
    assert config.export_target == target and config.table_bits == 4 and not activation_ranges(model)
    assert type(model.backbone.token_embedding).__name__ == "QuantizedEmbedding"     # saved and loaded as such
    report = json.loads((out / "01_export" / f"model_{target}.tflite.json").read_text())
    assert report["quantization"] == target and report["verification"]["n"] == 32
    assert report["ops"]["EMBEDDING_LOOKUP"] == 2 and "GATHER" not in report["ops"]


def test_untrained_qat_model_distilled_by_a_later_stage_then_exported(tmp_path, finetuned):
    """qat epochs: 0 saves the calibrated fake-quant twin untrained; a distill stage with student: previous trains it
    (still quantization-aware) from a teacher, and the export of the target verifies against it."""
    import numpy as np

    from tfbertopt.quantization import is_quantized, quantization_config
    from tfbertopt.saving import load_model

    recipe = dict(RECIPE, model=finetuned, stages=[
        {"qat": {"target": "int4", "epochs": 0}},
        {"distill": {"teacher": finetuned, "student": "previous", "max_steps": 2, "epochs": 1}},
        {"export": {"quantization": ["int4"], "verify_examples": 32, "force": True}}])
    out = tmp_path / "out"
    run_recipe(load_recipe(_write(tmp_path, recipe)), str(out))
    finished = json.loads((out / "state.json").read_text())["finished"]
    assert "history" not in finished["00_qat"] and 0 <= finished["00_qat"]["dev"]["accuracy"] <= 1
    untrained, distilled = (load_model(str(out / f"{key}" / "model.keras")) for key in ("00_qat", "01_distill"))
    assert is_quantized(distilled) and quantization_config(distilled).export_target == "int4"
    kernel = lambda m: np.asarray(m.backbone.transformer_layers[0].weights[0])    # noqa: E731
    assert not np.allclose(kernel(untrained), kernel(distilled))
    report = json.loads((out / "02_export" / "model_int4.tflite.json").read_text())
    assert report["verification"]["passed"] and report["verification"]["label_agreement"] >= 0.99


def test_qat_epochs_must_not_be_negative(tmp_path):
    from tfbertopt.recipe import RecipeError

    with pytest.raises(RecipeError, match=r"stages\[0\].qat.epochs: must be >= 0"):
        load_recipe(_write(tmp_path, dict(RECIPE, stages=[{"qat": {"epochs": -1}}])))
    with pytest.raises(RecipeError, match=r"stages\[0\].qat: learned_weight_scales trains per-channel scales"):
        load_recipe(_write(tmp_path, dict(RECIPE, stages=[{"qat": {"target": "int4-block32",
                                                                   "learned_weight_scales": True}}])))


def test_int8_matmul_export_stage_is_verified_and_tagged(tmp_path, finetuned):
    recipe = dict(RECIPE, model=finetuned, stages=[
        {"export": {"quantization": ["int8-matmul"], "verify_examples": 32, "min_agreement": 0.9,
                    "calibration_steps": 16}},
        {"benchmark": {"latency_runs": 2, "threads": [1]}}])
    out = tmp_path / "out"
    run_recipe(load_recipe(_write(tmp_path, recipe)), str(out))
    assert (out / "00_export" / "model_int8-matmul.tflite").exists()
    row, = json.loads((out / "report.json").read_text())["rows"]
    assert row["quantization"] == "int8-matmul" and row["verified"] is True
    assert {"ptq-int8", "mixed-precision", "equalized"} <= set(row["tags"])


def test_qat_for_the_int8_matmul_graph_then_its_export(tmp_path, finetuned):
    from tfbertopt.quantization import quantization_config
    from tfbertopt.saving import load_model

    recipe = dict(RECIPE, model=finetuned, stages=[
        {"qat": {"target": "int8-matmul", "max_steps": 3, "calibration_steps": 16}},
        {"export": {"quantization": ["int8-matmul"], "verify_examples": 32, "min_agreement": 0.9,
                    "calibration_steps": 16}}])
    out = tmp_path / "out"
    run_recipe(load_recipe(_write(tmp_path, recipe)), str(out))
    config = quantization_config(load_model(str(out / "00_qat" / "model.keras")))
    assert config.matmul_only and config.output_channel_spread == 8.0
    assert (out / "01_export" / "model_int8-matmul.tflite").exists()


def test_qat_stage_options_are_validated(tmp_path):
    from tfbertopt.recipe import RecipeError

    bad = dict(RECIPE, stages=[{"qat": {"points": ["softmax"]}}])
    with pytest.raises(RecipeError, match=r"stages\[0\].qat.points"):
        load_recipe(_write(tmp_path, bad))


def test_mixed_precision_export_in_a_recipe(tmp_path, finetuned):
    recipe = dict(RECIPE, model=finetuned, stages=[
        {"export": {"quantization": ["float32", "mixed"], "verify_examples": 32, "calibration_steps": 16,
                    "mixed_max_float_ops": 6, "mixed_holdout": 32, "force": True}},
        {"benchmark": {"latency_runs": 2, "threads": [1]}}])
    out = tmp_path / "out"
    run_recipe(load_recipe(_write(tmp_path, recipe)), str(out))
    rows = {r["variant"]: r for r in json.loads((out / "report.json").read_text())["rows"]}
    assert rows["mixed"]["tags"] == ["mixed-precision"] and 0 < rows["mixed"]["float_ops"]
    assert (out / "00_export" / "model_mixed.tflite").exists()


def test_a_stage_that_cannot_run_prints_one_line(tmp_path, capsys):
    from tfbertopt.cli import main

    # ALBERT's embeddings are already E wide (normalised before their projection): no V x H table to factorize.
    recipe = {"name": "albert", "model": "demo-albert", "task": "sst2",
              "data": {"source": "demo", "demo_train_examples": 32}, "sequence_length": 16,
              "stages": [{"factorize": {"embedding_dim": 4, "recovery_epochs": 0}}]}
    assert main(["run", _write(tmp_path, recipe), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0]
    assert err[0].startswith("tfbertopt: error: stage 00_factorize cannot run: this model's embeddings are already")
    with pytest.raises(Exception, match="no tiny 'gpt2' classifier"):
        run_recipe(load_recipe(_write(tmp_path, {**recipe, "model": "demo-gpt2"})), str(tmp_path / "out2"))


def test_trim_vocabulary_stage_keeps_the_corpus_pieces_and_counts_the_cost(tmp_path, finetuned):
    from tfbertopt.evaluation import evaluate
    from tfbertopt.runner import load_data
    from tfbertopt.saving import load_model

    original = load_model(finetuned).preprocessor.tokenizer.get_vocabulary()
    words = [w for w in original if w.isalpha()][:6]
    (tmp_path / "corpus.txt").write_text("\n".join(words) + "\n\n")
    recipe = dict(RECIPE, model=finetuned, stages=[
        {"trim_vocabulary": {"train_text": False, "corpus": str(tmp_path / "corpus.txt"), "characters": False}},
        {"export": {"quantization": ["float32"], "verify_examples": 32}}])
    out = tmp_path / "out"
    run_recipe(load_recipe(_write(tmp_path, recipe)), str(out))
    stage = json.loads((out / "state.json").read_text())["finished"]["00_trim_vocabulary"]
    vocab = load_model(stage["model"]).preprocessor.tokenizer.get_vocabulary()
    assert vocab == [w for w in original if w in set(words) | {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"}]
    assert stage["kept"] == len(vocab) and stage["vocabulary_size"] == len(original)
    # Dev sentences use words outside the six: they now hold [UNK], and the stage says how many.
    assert 0 < stage["coverage"]["texts_with_new_unk"] <= stage["coverage"]["texts"]
    assert stage["tags"] == ["vocab-trim"]
    _, dev = load_data(load_recipe(_write(tmp_path, recipe)))     # the cost: dev metrics before and after the trim
    assert stage["dev_before"] == evaluate(load_model(finetuned), dev)
    assert stage["dev_after"] == evaluate(load_model(stage["model"]), dev)
    assert json.loads((out / "state.json").read_text())["finished"]["01_export"]["exports"][0]["verification"]["passed"]
