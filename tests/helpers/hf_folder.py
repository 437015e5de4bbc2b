"""Write a tiny BERT checkpoint in Hugging Face layout, offline, for tests.

The tensor names and orientations are those of `transformers.BertModel` (Linear weights are `(out, in)`), which
is what keras-hub's `convert_bert` reads (with the `bert.` prefix optional; it is left out here, as in the
sentence-transformers checkpoints). LayerNorm parameters use the `weight`/`bias` convention.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def _bert_tensors(vocab_size, num_layers, hidden, intermediate, max_positions, type_vocab_size, seed, with_pooler):
    rng = np.random.default_rng(seed)

    def rand(*shape):
        return rng.normal(0.0, 0.02, size=shape).astype(np.float32)

    def norm(n):
        # gamma near 1 and beta near 0, but distinct values so a transpose/mix-up shows.
        return (1.0 + rand(n)).astype(np.float32), rand(n)

    t = {
        "embeddings.word_embeddings.weight": rand(vocab_size, hidden),
        "embeddings.position_embeddings.weight": rand(max_positions, hidden),
        "embeddings.token_type_embeddings.weight": rand(type_vocab_size, hidden),
    }
    t["embeddings.LayerNorm.weight"], t["embeddings.LayerNorm.bias"] = norm(hidden)
    for i in range(num_layers):
        p = f"encoder.layer.{i}."
        for name in ("query", "key", "value"):
            t[p + f"attention.self.{name}.weight"] = rand(hidden, hidden)
            t[p + f"attention.self.{name}.bias"] = rand(hidden)
        t[p + "attention.output.dense.weight"] = rand(hidden, hidden)
        t[p + "attention.output.dense.bias"] = rand(hidden)
        t[p + "attention.output.LayerNorm.weight"], t[p + "attention.output.LayerNorm.bias"] = norm(hidden)
        t[p + "intermediate.dense.weight"] = rand(intermediate, hidden)  # (out, in)
        t[p + "intermediate.dense.bias"] = rand(intermediate)
        t[p + "output.dense.weight"] = rand(hidden, intermediate)  # (out, in)
        t[p + "output.dense.bias"] = rand(hidden)
        t[p + "output.LayerNorm.weight"], t[p + "output.LayerNorm.bias"] = norm(hidden)
    if with_pooler:
        t["pooler.dense.weight"] = rand(hidden, hidden)
        t["pooler.dense.bias"] = rand(hidden)
    return t


def write_tiny_hf_bert(
    folder,
    vocab: list[str],
    num_layers: int = 2,
    hidden: int = 32,
    heads: int = 2,
    intermediate: int = 64,
    seed: int = 0,
    with_pooler: bool = True,
    weights_format: str = "safetensors",
    do_lower_case: bool = True,
    max_positions: int = 64,
    type_vocab_size: int = 2,
) -> dict[str, np.ndarray]:
    """Writes `config.json`, weights, `vocab.txt` and `tokenizer_config.json` to `folder`; returns the tensors.

    Args:
      folder: target folder (created if needed).
      vocab: the vocabulary, one token a line in `vocab.txt`, written as given (include the special tokens).
      weights_format: "safetensors" writes `model.safetensors`; "bin" writes a placeholder `pytorch_model.bin`
        (not a loadable checkpoint: it stands for a folder that only has PyTorch weights); None writes none.
      with_pooler: include `pooler.dense.*` (BertModel checkpoints saved with add_pooling_layer=False lack it).
    """
    if hidden % heads:
        raise ValueError(f"hidden={hidden} is not divisible by heads={heads}")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = _bert_tensors(len(vocab), num_layers, hidden, intermediate, max_positions, type_vocab_size, seed,
                            with_pooler)
    config = {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "vocab_size": len(vocab),
        "hidden_size": hidden,
        "num_hidden_layers": num_layers,
        "num_attention_heads": heads,
        "intermediate_size": intermediate,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.1,
        "attention_probs_dropout_prob": 0.1,
        "max_position_embeddings": max_positions,
        "type_vocab_size": type_vocab_size,
        "initializer_range": 0.02,
        "layer_norm_eps": 1e-12,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "torch_dtype": "float32",
    }
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    (folder / "vocab.txt").write_text("".join(f"{token}\n" for token in vocab), encoding="utf-8")
    (folder / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": do_lower_case,
        "model_max_length": max_positions,
        "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]", "cls_token": "[CLS]",
        "mask_token": "[MASK]",
    }, indent=2))
    if weights_format == "safetensors":
        from safetensors.numpy import save_file

        save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    elif weights_format == "bin":
        (folder / "pytorch_model.bin").write_bytes(b"not a real torch pickle")
    elif weights_format is not None:
        raise ValueError(f"unknown weights_format {weights_format!r}; use 'safetensors', 'bin' or None")
    return tensors
