"""A BERT encoder exported to ONNX by `torch.onnx` (sentence-transformers style) as a Hugging Face folder that
keras-hub loads: `config.json`, `model.safetensors`, `vocab.txt`, `tokenizer_config.json`.

keras-hub cannot read ONNX. In such an export the embeddings, biases and LayerNorms keep their Hugging Face names
behind a prefix (`model.0.auto_model.`); the dense kernels are anonymous MatMul initializers (`onnx::MatMul_470`)
stored (in, out), named here by the MatMul node that consumes them (`.../encoder/layer.0/attention/self/query/MatMul`
-> `encoder.layer.0.attention.self.query.weight`, transposed to Hugging Face's (out, in)). The export has no pooler,
which keras-hub's converter requires: an identity pooler (weight = identity, bias = 0; not pretrained) is written.

The core (`hf_tensors`, `hf_config`) takes plain dicts of numpy arrays; only `read_onnx` needs the `onnx` package
(`pip install onnx`, or the `onnx` extra), imported when it runs.

Example, on a one-tensor stand-in for a real export:

>>> import numpy as np
>>> matmul_tensor_name("/model/model.0/auto_model/encoder/layer.2/intermediate/dense/MatMul")
'encoder.layer.2.intermediate.dense.weight'
>>> hf_tensor_name("model.0.auto_model.embeddings.LayerNorm.bias")
'embeddings.LayerNorm.bias'
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np

PREFIX = "model.0.auto_model."
_MATMUL = re.compile(r"(?:^|/)(encoder/layer\.\d+/[\w./]+?)/MatMul$")
# The tensors of one Hugging Face BertModel layer, as keras-hub's converter reads them.
LAYER_TENSORS = [f"{part}.{kind}" for part in ("attention.self.query", "attention.self.key", "attention.self.value",
                                               "attention.output.dense", "intermediate.dense", "output.dense")
                 for kind in ("weight", "bias")] + [
    f"{norm}.LayerNorm.{kind}" for norm in ("attention.output", "output") for kind in ("weight", "bias")]
EMBEDDING_TENSORS = ["embeddings.word_embeddings.weight", "embeddings.position_embeddings.weight",
                     "embeddings.token_type_embeddings.weight", "embeddings.LayerNorm.weight",
                     "embeddings.LayerNorm.bias"]


class ConversionError(ValueError):
    """An ONNX export that is not a BERT encoder this converter understands; the message says what is missing."""


def hf_tensor_name(initializer: str, prefix: str = PREFIX) -> str | None:
    """The Hugging Face name of a named ONNX initializer (`model.0.auto_model.X` -> `X`), None for other names."""
    return initializer[len(prefix):] if initializer.startswith(prefix) else None


def matmul_tensor_name(node: str) -> str | None:
    """The Hugging Face kernel name of the weight an encoder MatMul node consumes, None for other nodes."""
    match = _MATMUL.search(node)
    return match.group(1).replace("/", ".") + ".weight" if match else None


def hf_tensors(initializers: dict[str, np.ndarray], matmul_nodes: dict[str, str],
               prefix: str = PREFIX) -> dict[str, np.ndarray]:
    """Hugging Face `BertModel` tensors from an export's initializers.

    Args:
      initializers: every ONNX initializer, name -> array.
      matmul_nodes: initializer name -> the name of the MatMul node that consumes it (kernels are stored (in, out)).
      prefix: the prefix of the named initializers.

    Returns every tensor keras-hub's BERT converter reads, kernels transposed to (out, in), plus an identity pooler.
    Raises ConversionError naming the tensors it could not find.
    """
    tensors = {}
    for name, array in initializers.items():
        hf = hf_tensor_name(name, prefix)
        if hf is None and name in matmul_nodes:
            hf = matmul_tensor_name(matmul_nodes[name])
            array = None if hf is None else np.asarray(array).T
        if hf is not None:
            if hf in tensors:
                raise ConversionError(f"two initializers map to {hf}")
            tensors[hf] = np.ascontiguousarray(array, dtype=np.float32)
    layers = _num_layers(tensors)
    expected = EMBEDDING_TENSORS + [f"encoder.layer.{i}.{t}" for i in range(layers) for t in LAYER_TENSORS]
    missing = [name for name in expected if name not in tensors]
    if missing:
        raise ConversionError(f"the ONNX export lacks {len(missing)} BERT tensors, e.g. {missing[:3]}")
    hidden = tensors["embeddings.word_embeddings.weight"].shape[1]
    tensors.setdefault("pooler.dense.weight", np.eye(hidden, dtype=np.float32))   # identity: not pretrained
    tensors.setdefault("pooler.dense.bias", np.zeros(hidden, dtype=np.float32))
    return {name: tensors[name] for name in sorted(tensors) if name in expected or name.startswith("pooler.")}


def _num_layers(tensors: dict) -> int:
    indices = {int(m.group(1)) for name in tensors if (m := re.match(r"encoder\.layer\.(\d+)\.", name))}
    if not indices:
        raise ConversionError("the ONNX export has no encoder.layer.N tensors")
    return max(indices) + 1


def hf_config(tensors: dict[str, np.ndarray], num_heads: int, **extra) -> dict:
    """A Hugging Face BERT `config.json` for `tensors` (the head count is not in the weights)."""
    vocab, hidden = tensors["embeddings.word_embeddings.weight"].shape
    if hidden % num_heads:
        raise ConversionError(f"hidden size {hidden} is not divisible by num_heads={num_heads}")
    return {"architectures": ["BertModel"], "model_type": "bert", "hidden_act": "gelu",
            "vocab_size": int(vocab), "hidden_size": int(hidden), "num_attention_heads": num_heads,
            "num_hidden_layers": _num_layers(tensors),
            "intermediate_size": int(tensors["encoder.layer.0.intermediate.dense.weight"].shape[0]),
            "max_position_embeddings": int(tensors["embeddings.position_embeddings.weight"].shape[0]),
            "type_vocab_size": int(tensors["embeddings.token_type_embeddings.weight"].shape[0]),
            "layer_norm_eps": 1e-12, "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1,
            "initializer_range": 0.02, "pad_token_id": 0, "position_embedding_type": "absolute", **extra}


def write_hf_folder(tensors: dict[str, np.ndarray], config: dict, tokenizer_folder: str | Path,
                    out: str | Path) -> Path:
    """Writes config.json, model.safetensors and the tokenizer's vocab.txt and tokenizer_config.json to `out`
    (through a temporary folder, so a stopped conversion leaves no half-written folder)."""
    from safetensors.numpy import save_file

    out, tokenizer_folder = Path(out), Path(tokenizer_folder)
    vocab = tokenizer_folder / "vocab.txt"
    lines = vocab.read_text(encoding="utf-8").splitlines()
    if len(lines) != config["vocab_size"]:
        raise ConversionError(f"{vocab} has {len(lines)} tokens, the weights {config['vocab_size']}")
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    save_file(tensors, str(tmp / "model.safetensors"))
    (tmp / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    shutil.copyfile(vocab, tmp / "vocab.txt")
    shutil.copyfile(tokenizer_folder / "tokenizer_config.json", tmp / "tokenizer_config.json")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    return out


def read_onnx(path: str | Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(initializers, matmul_nodes) of an ONNX file, the inputs of `hf_tensors`. Needs the `onnx` package."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as e:
        raise ConversionError("converting an ONNX checkpoint needs the onnx package: pip install onnx") from e
    graph = onnx.load(str(path)).graph
    initializers = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    matmul_nodes = {}
    for node in graph.node:
        if node.op_type == "MatMul":
            for name in node.input:
                if name in initializers:
                    matmul_nodes[name] = node.name
    return initializers, matmul_nodes


def convert_onnx_bert(onnx_path: str | Path, tokenizer_folder: str | Path, out: str | Path, num_heads: int,
                      **config_extra) -> Path:
    """Converts a torch.onnx BERT encoder export into a Hugging Face folder keras-hub loads; returns `out`."""
    tensors = hf_tensors(*read_onnx(onnx_path))
    return write_hf_folder(tensors, hf_config(tensors, num_heads, **config_extra), tokenizer_folder, out)
