"""The recipe runner end to end on the offline demo, including resume after a finished stage."""

import json

import pytest
import yaml

from tfbertopt.recipe import load_recipe
from tfbertopt.runner import run_recipe

RECIPE = {
    "name": "t", "model": "demo", "task": "sst2", "sequence_length": 16,
    "data": {"source": "demo", "demo_train_examples": 128},
    "stages": [{"finetune": {"epochs": 1, "batch_size": 32, "learning_rate": 1e-3}},
               {"export": {"quantization": ["float32", "dynamic"]}},
               {"benchmark": {"latency_runs": 2, "threads": [1], "verify_examples": 32}}],
}


def _write(tmp_path, recipe):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return str(path)


def test_demo_recipe_end_to_end_and_resume(tmp_path, capsys):
    out = tmp_path / "out"
    run = run_recipe(load_recipe(_write(tmp_path, RECIPE)), str(out))
    report = json.loads((out / "report.json").read_text())
    variants = {r["variant"]: r for r in report["rows"]}
    assert set(variants) == {"float32", "dynamic"}
    assert variants["float32"]["tags"] == ["baseline", "teacher", "finetune"]
    assert variants["float32"]["baseline"] is None and variants["dynamic"]["baseline"] == "float32"
    assert variants["float32"]["verified"] is True
    assert variants["dynamic"]["tflite_mb"] < variants["float32"]["tflite_mb"]
    assert (out / "00_finetune" / "model.keras").exists()
    assert set(json.loads((out / "state.json").read_text())["finished"]) == {"00_finetune", "01_export",
                                                                              "02_benchmark"}
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
