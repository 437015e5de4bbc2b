"""Every compressed state saves to `.keras` and loads in a FRESH process, with Keras safe_mode, to bit-identical logits.

The reloading process imports nothing from tfbertopt but `tfbertopt.saving` (asserted there), and passes no
`custom_objects`: `tfbertopt.saving.load_model` must register every class a compressed model needs by itself.
Besides the logits, the reloaded model's type, backbone config (layer specs: factorization ranks, sharing,
LayerDrop, shrunk shapes), count of exact zeros in its weights (pruning masks) and optimizer step (pruning schedule
position) must equal the original's.

All cases are saved first and then loaded by ONE fresh process (one TensorFlow start instead of one per case); the
loader loads a plain classifier first (`load_model` imports its registrations on its first call) and then checks
that loading a case imports no further tfbertopt module, so no case can pass on a class that an earlier case's load
pulled in.

In-process save/load tests of the same states live next to each method's tests; these are the cold-start variants.
"""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from tfbertopt.data.demo import demo_examples, demo_vocabulary
from tfbertopt.data.pipeline import encode, make_dataset, without_preprocessor
from tfbertopt.models import tiny_bert_classifier

LOADER = textwrap.dedent('''
    import json
    import os
    import sys
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    import numpy as np
    assert not [m for m in sys.modules if m.startswith("tfbertopt")], "the loader must start without tfbertopt"
    from tfbertopt.saving import load_model

    def tfbertopt_modules():
        return {m for m in sys.modules if m.startswith("tfbertopt")}

    seen = tfbertopt_modules()
    for case in json.loads(open(sys.argv[1]).read()):
        try:
            model = load_model(case["model"], safe_mode=True)
            x = dict(np.load(case["features"], allow_pickle=False))
            model.preprocessor = None   # token features in, as tfbertopt.data.pipeline.without_preprocessor does
            np.save(case["logits"], np.asarray(model(x, training=False)), allow_pickle=False)
            info = describe(model)
            info["new_modules"] = sorted(tfbertopt_modules() - seen)
            seen = tfbertopt_modules()
        except Exception as error:  # reported per case; the other cases still load
            info = {"error": f"{type(error).__name__}: {error}"}
        print("INFO " + json.dumps({"case": case["name"], **info}, default=str), flush=True)
''')


def describe(model) -> dict:
    """What must survive the round trip besides the logits (also run, as source, in the loading process)."""
    backbone = getattr(model, "backbone", None)
    optimizer = getattr(model, "optimizer", None)
    return {
        "type": type(model).__name__,
        "backbone_type": type(backbone).__name__ if backbone is not None else None,
        "backbone_config": backbone.get_config() if backbone is not None else None,
        "zeros": int(sum(int((np.asarray(w) == 0).sum()) for w in model.weights)),
        "weights": len(model.weights),
        "step": int(np.asarray(optimizer.iterations)) if optimizer is not None else None,
    }


def _source_of_describe() -> str:
    import inspect

    return textwrap.dedent(inspect.getsource(describe))


def build(seed=0, layers=2, width=32, dropout=0.1):
    return tiny_bert_classifier(demo_vocabulary(), num_layers=layers, hidden_dim=width, num_heads=2,
                                intermediate_dim=2 * width, sequence_length=16, seed=seed, dropout=dropout)


def _train(model, steps=3):
    """A few fit steps (optimizer state and a non-initial step count in the file)."""
    train = demo_examples("train", 96)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    ds = make_dataset(encode(train.texts, model.preprocessor), train.labels, 32, shuffle=True, repeat_epochs=2)
    return ds


# --- the compressed states ------------------------------------------------------------------------------------

def plain():
    """An untouched classifier: loaded first, it is the loader's reference for which modules loading imports."""
    return build(0)


def distilled_narrow_student():
    """A narrow student trained by the Distiller (KL + hidden MSE through a projection); the student is saved."""
    from tfbertopt.distillation import DistillationConfig, Distiller, narrow_student

    teacher = build(0)
    teacher.trainable = False
    student = narrow_student(teacher, hidden_dim=16, num_layers=1, num_heads=2, intermediate_dim=32, seed=1)
    distiller = Distiller(student, teacher, DistillationConfig(logits="kl", logits_weight=1.0, hidden="mse",
                                                                hidden_weight=1.0))
    assert distiller.projections
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
    train = demo_examples("train", 96)
    ds = make_dataset(encode(train.texts, teacher.preprocessor), train.labels, 32, shuffle=True, repeat_epochs=2)
    distiller.fit(ds, epochs=1, steps_per_epoch=3, verbose=0, shuffle=False)
    return distiller.student


def distilled_layer_student():
    """DistilBERT-style: a student_from_teacher (PrunedBertBackbone) trained by the Distiller with hidden MSE."""
    from tfbertopt.distillation import DistillationConfig, Distiller, student_from_teacher

    teacher = build(0, layers=4)
    teacher.trainable = False
    student = student_from_teacher(teacher, "every_other")
    distiller = Distiller(student, teacher, DistillationConfig(hidden="mse", hidden_weight=1.0, layer_map="skip"))
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3))
    train = demo_examples("train", 96)
    ds = make_dataset(encode(train.texts, teacher.preprocessor), train.labels, 32, shuffle=True, repeat_epochs=2)
    distiller.fit(ds, epochs=1, steps_per_epoch=3, verbose=0, shuffle=False)
    return distiller.student


def factorized():
    from tfbertopt.factorization import factorize

    return factorize(build(0), rank=4)


def factorized_embeddings():
    from tfbertopt.factorization import factorize_embeddings

    return factorize_embeddings(build(0), dim=8)


def shared_layers():
    from tfbertopt.factorization import share_layers

    return share_layers(build(0, layers=4), "pairs")


def albert_style():
    """All three ALBERT moves composed: shared layers, factorized (once per unique layer), factorized embeddings;
    then trained, so the file carries an optimizer too."""
    from tfbertopt.factorization import factorize, factorize_embeddings, share_layers

    model = factorize_embeddings(factorize(share_layers(build(0, layers=4), "pairs"), energy=0.9), dim=8)
    ds = _train(model)
    with without_preprocessor(model):
        model.fit(ds, epochs=1, steps_per_epoch=2, verbose=0, shuffle=False)
    return model


def shrunk():
    from tfbertopt.pruning.structured import full_plan, shrink

    model = build(0, layers=3)
    plan = full_plan(model)
    plan.layers = [0, 2]
    plan.heads = {0: [1], 1: [0, 1], 2: [0]}
    plan.neurons = {i: list(range(0, 64, i + 2)) for i in range(3)}
    return shrink(model, plan)


def layerdrop():
    from tfbertopt.pruning.structured import with_layerdrop

    return with_layerdrop(build(0, layers=3), 0.3)


def pruned_mid_training():
    """Magnitude pruning stopped mid-schedule: masks (the zero patterns) and the step (optimizer iterations)."""
    from tfbertopt.pruning import PolynomialDecay, UpdatePruningStep, prune_low_magnitude

    model = prune_low_magnitude(build(0, dropout=0.0), PolynomialDecay(0.0, 0.8, 0, 12, frequency=2))
    ds = _train(model)
    with without_preprocessor(model):
        model.fit(ds, epochs=1, steps_per_epoch=5, callbacks=[UpdatePruningStep()], verbose=0, shuffle=False)
    return model


def bilstm():
    from tfbertopt.distillation import bilstm_student

    return bilstm_student(build(0), units=8, hidden_units=16, projection_dim=12)


def cnn():
    from tfbertopt.distillation import cnn_student

    return cnn_student(build(0), filters=6, kernel_sizes=(2, 3), hidden_units=8)


def bilstm_distilled():
    """Tang et al.: a BiLSTM student distilled with logits MSE through finetune(teacher=...) (compiled, trained)."""
    from tfbertopt.distillation import bilstm_student
    from tfbertopt.train import finetune

    teacher = build(0)
    teacher.trainable = False
    student = bilstm_student(teacher, units=8, hidden_units=16)
    finetune(student, demo_examples("train", 64), teacher=teacher, epochs=1, batch_size=32, verbose=0,
             distillation={"hard_label_weight": 0.0, "logits": "mse", "logits_weight": 1.0})
    return student


def quantization_aware_mid_training():
    """QAT of a shrunk model stopped mid-training: trained activation ranges, fake-quant layers, optimizer step."""
    from tfbertopt.pruning.structured import full_plan, shrink
    from tfbertopt.quantization import quantize_model

    source = build(0, layers=2)
    plan = full_plan(source)
    plan.heads = {0: [1], 1: [0, 1]}
    model = quantize_model(shrink(source, plan), calibration=demo_examples("train", 32), calibration_steps=16)
    ds = _train(model)
    with without_preprocessor(model):
        model.fit(ds, epochs=1, steps_per_epoch=3, verbose=0, shuffle=False)
    return model


def deberta_compressed_mid_training():
    """DeBERTa-v3 (disentangled attention, shared relative-position table) shrunk, factorized and made
    quantization-aware for int8-matmul, stopped mid-training."""
    from tfbertopt.factorization import factorize
    from tfbertopt.models import tiny_classifier
    from tfbertopt.pruning.structured import full_plan, shrink
    from tfbertopt.quantization import QuantizationConfig, quantize_model

    source = tiny_classifier("deberta_v3", num_layers=2, hidden_dim=32, num_heads=4, intermediate_dim=64,
                             dropout=0.1)
    plan = full_plan(source)
    plan.heads = {0: [1, 2], 1: [0]}
    model = quantize_model(factorize(shrink(source, plan), rank=6), QuantizationConfig.for_export("int8-matmul"),
                           calibration=demo_examples("train", 32), calibration_steps=16)
    ds = _train(model)
    with without_preprocessor(model):
        model.fit(ds, epochs=1, steps_per_epoch=3, verbose=0, shuffle=False)
    return model


CASES = {f.__name__: f for f in (plain, distilled_narrow_student, distilled_layer_student, factorized,
                                 factorized_embeddings, shared_layers, albert_style, shrunk, layerdrop,
                                 pruned_mid_training, bilstm, cnn, bilstm_distilled,
                                 quantization_aware_mid_training, deberta_compressed_mid_training)}


@pytest.fixture(scope="module")
def reloaded(tmp_path_factory):
    """Builds and saves every case, loads them all in one fresh process;
    {case: (expected logits, describe() before, path of the reloaded logits, loader's INFO after)}."""
    folder = tmp_path_factory.mktemp("round_trips")
    saved, jobs = {}, []
    for name in ["plain"] + sorted(set(CASES) - {"plain"}):
        model = CASES[name]()
        features = encode(demo_examples("dev", 24).texts, model.preprocessor)
        paths = {n: str(folder / f"{name}_{n}") for n in ("model.keras", "x.npz", "logits.npy")}
        model.save(paths["model.keras"])
        np.savez(paths["x.npz"], **features)
        with without_preprocessor(model):
            expected = np.asarray(model(features, training=False))
        saved[name] = (expected, json.loads(json.dumps(describe(model), default=str)), paths["logits.npy"])
        jobs.append({"name": name, "model": paths["model.keras"], "features": paths["x.npz"],
                     "logits": paths["logits.npy"]})
        keras.backend.clear_session()
    (folder / "jobs.json").write_text(json.dumps(jobs))
    script = "import numpy as np\n" + _source_of_describe() + LOADER
    result = subprocess.run([sys.executable, "-c", script, str(folder / "jobs.json")], capture_output=True,
                            text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    infos = [json.loads(line[5:]) for line in result.stdout.splitlines() if line.startswith("INFO ")]
    after = {info.pop("case"): info for info in infos}
    return {name: (expected, before, logits_path, after.get(name))
            for name, (expected, before, logits_path) in saved.items()}


@pytest.mark.xdist_group("round_trips")
@pytest.mark.parametrize("case", sorted(CASES))
def test_round_trip_in_a_fresh_process_is_bit_exact(case, reloaded):
    expected, before, logits_path, after = reloaded[case]
    assert after is not None, f"the loader printed nothing for {case}"
    assert "error" not in after, after.get("error")
    if case != "plain":
        assert after["new_modules"] == [], f"loading {case} imported {after['new_modules']}"

    np.testing.assert_array_equal(np.load(logits_path, allow_pickle=False), expected)
    for key in ("type", "backbone_type", "backbone_config", "zeros", "weights"):
        assert after[key] == before[key], key
    if before["step"]:   # trained and compiled: the optimizer (and so the pruning step) comes back too
        assert after["step"] == before["step"]
    if case == "pruned_mid_training":
        assert before["step"] == 5 and before["zeros"] > 0
    if case == "layerdrop":
        assert after["backbone_config"]["layerdrop"] == 0.3
