"""Everything distillation compares, from one forward pass: embeddings, hidden states, attention, logits.

`IntermediateModel(model)` is a functional Keras model over the *existing* layers of a keras-hub BERT-family
classifier or backbone (shared weights, no copies). It takes the backbone's own embedding graph up to the tensor
that feeds the first encoder layer, re-applies the encoder layers (found by `tfbertopt.kernels.encoder_layers`)
with the padding mask, asking each for its attention probabilities (keras MultiHeadAttention's masked softmax,
the probabilities the model really uses, before attention dropout), then applies the pooler and head exactly as
the classifier does. Its output is a dict:

| key | value |
| --- | --- |
| `embedding` | [batch, seq, hidden]: the embedding output, input of the first encoder layer |
| `hidden_states` | list, one [batch, seq, hidden] per encoder layer call (ALBERT: per repetition) |
| `attentions` | list, one [batch, heads, query, key] per layer call (only with `attention=True`) |
| `logits` | [batch, classes] (task models only) |

Supported: BERT (`BertTextClassifier`, also over tfbertopt's `PrunedBertBackbone` and ELECTRA backbones),
DistilBERT, RoBERTa (and XLM-RoBERTa), ALBERT and DeBERTa-v3 classifiers (each also over a `CompressedBackbone`), and
their bare backbones. DeBERTa-v3's layers get the backbone's shared relative-position embeddings as the backbone
gives them; keras-hub's own DeBERTa-v3 layers cannot return attention probabilities (tfbertopt's compressed ones
can).

Any other Keras model that maps the feature dict to logits (the BiLSTM/CNN students of
`tfbertopt.distillation.word_students`) gets a `LogitsOnlyModel` view instead (`internals_view` picks): its output
dict has `logits` only and `num_layers` is 0, so only the logits and hard-label terms can use it.

Example:

>>> import numpy as np
>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.distillation.internals import IntermediateModel
>>> clf = tiny_bert_classifier(["good", "bad"], num_layers=2, hidden_dim=16, intermediate_dim=32)
>>> internals = IntermediateModel(clf)
>>> x = {"token_ids": np.array([[2, 5, 3, 0]]), "segment_ids": np.zeros((1, 4), "int32"),
...      "padding_mask": np.array([[1, 1, 1, 0]])}
>>> out = internals(x)
>>> len(out["hidden_states"]), tuple(out["attentions"][0].shape), tuple(out["logits"].shape)
(2, (1, 2, 4, 4), (1, 2))
>>> np.allclose(out["logits"], clf(x), atol=1e-5)
True
"""

from __future__ import annotations

import inspect

import keras

from tfbertopt.kernels import UnsupportedModelError, encoder_layers, find_kernels, get_backbone


class AttentionUnavailableError(UnsupportedModelError):
    """The model's encoder layers cannot return their attention probabilities."""


# Task classes whose head `IntermediateModel` reproduces (by keras-hub class name; subclasses are accepted).
_TASKS = ("BertTextClassifier", "DistilBertTextClassifier", "RobertaTextClassifier", "AlbertTextClassifier",
          "DebertaV3TextClassifier")


def supports_attention(model) -> bool:
    """Whether every encoder layer's `call` accepts `return_attention_scores` (keras-hub TransformerEncoder does)."""
    return all("return_attention_scores" in inspect.signature(layer.call).parameters
               for layer in encoder_layers(model))


def _check_task(model, backbone):
    import keras_hub

    if model is backbone:
        return
    known = [getattr(keras_hub.models, name, None) for name in _TASKS]
    if not any(cls is not None and isinstance(model, cls) for cls in known) or not hasattr(model, "output_dense"):
        raise UnsupportedModelError(
            f"IntermediateModel reproduces the heads of {list(_TASKS)}; got {type(model).__name__} (over "
            f"{type(backbone).__name__}). Pass its backbone to get embeddings, hidden states and attention only.")


def _call_order(backbone, encoders: list) -> list:
    """Encoder layers in the order the backbone calls them (ALBERT repeats each group num_layers/num_groups times)."""
    order = getattr(backbone, "encoder_call_order", None)   # tfbertopt's PrunedBertBackbone (cross-layer sharing)
    if order is not None:
        return [encoders[i] for i in order]
    groups = getattr(backbone, "num_groups", None)
    inner = getattr(backbone, "num_inner_repetitions", None)
    if groups is None or inner is None:
        return list(encoders)
    if len(encoders) != groups * inner:
        raise UnsupportedModelError(
            f"{type(backbone).__name__} has {len(encoders)} encoder layers, expected num_groups * "
            f"num_inner_repetitions = {groups * inner}")
    calls = []
    for g in range(groups):
        group = encoders[g * inner:(g + 1) * inner]
        for _ in range(backbone.num_layers // groups):
            calls.extend(group)
    return calls


def _encoder_input(backbone, first):
    """The symbolic tensor that feeds the first encoder layer in the backbone's own functional graph."""
    nodes = getattr(first, "_inbound_nodes", None) or []
    args = nodes[0].arguments.args if nodes else ()
    if not args or not isinstance(args[0], keras.KerasTensor):
        raise UnsupportedModelError(
            f"cannot find the input of the first encoder layer ({first.name}) in the functional graph of "
            f"{type(backbone).__name__}")
    return args[0]


def _encoder_context(first) -> dict:
    """The tensors the backbone's graph gives its encoder layers besides the hidden states and the padding mask:
    DeBERTa-v3's shared relative-position embeddings (`rel_embeddings`), else none."""
    nodes = getattr(first, "_inbound_nodes", None) or []
    kwargs = nodes[0].arguments.kwargs if nodes else {}
    return {"rel_embeddings": kwargs["rel_embeddings"]} if "rel_embeddings" in kwargs else {}


class _WithAttention(keras.layers.Layer):
    """Calls a TransformerEncoder with `return_attention_scores=True` (keras-hub's encoder declares a single output
    shape, so it cannot be called that way on symbolic tensors directly). Owns no weights of its own."""

    def __init__(self, encoder, **kwargs):
        super().__init__(name=f"{encoder.name}_with_attention", dtype=encoder.dtype_policy, **kwargs)
        self.encoder = encoder

    def call(self, x, padding_mask, rel_embeddings=None, training=None):
        context = {} if rel_embeddings is None else {"rel_embeddings": rel_embeddings}
        return self.encoder(x, padding_mask=padding_mask, training=training, return_attention_scores=True, **context)


class IntermediateModel(keras.Model):
    """A functional view of `model` (classifier or backbone) returning its internals; see the module docstring.

    Attributes:
      family: the backbone class name.
      input_names: the inputs it takes (token_ids, padding_mask and, for BERT/ALBERT/ELECTRA, segment_ids).
      num_layers: number of hidden states (encoder layer calls).
      hidden_dims / num_heads: per layer call; `embedding_dim`: width of the embedding output.
      has_logits / num_classes: whether `logits` is among the outputs (task models), and its width.

    Raises:
      UnsupportedModelError: not a keras-hub BERT-family classifier/backbone this module understands.
      AttentionUnavailableError: `attention=True` but an encoder layer cannot return attention probabilities.
    """

    def __init__(self, model, attention: bool = True, name: str | None = None):
        backbone = get_backbone(model)
        encoders = encoder_layers(model)
        _check_task(model, backbone)
        if attention and not supports_attention(model):
            raise AttentionUnavailableError(
                f"the encoder layers of {type(backbone).__name__} ({type(encoders[0]).__name__}) cannot return "
                f"attention probabilities (their call() has no return_attention_scores); use attention=None in the "
                f"distillation config for this model")
        inputs = backbone.input
        if not isinstance(inputs, dict) or "padding_mask" not in inputs or "token_ids" not in inputs:
            raise UnsupportedModelError(f"{type(backbone).__name__} does not take token_ids and padding_mask inputs")
        padding_mask = inputs["padding_mask"]
        x = embedding = _encoder_input(backbone, encoders[0])
        context = _encoder_context(encoders[0])
        hidden_states, attentions = [], []
        wrappers = {}
        for layer in _call_order(backbone, encoders):
            if attention:
                wrapper = wrappers.setdefault(id(layer), _WithAttention(layer))
                x, probs = wrapper(x, padding_mask=padding_mask, **context)
                attentions.append(probs)
            else:
                x = layer(x, padding_mask=padding_mask, **context)
            hidden_states.append(x)
        outputs = {"embedding": embedding, "hidden_states": hidden_states}
        if attention:
            outputs["attentions"] = attentions
        if model is not backbone:
            outputs["logits"] = _head(model, backbone, x)
        super().__init__(inputs=dict(inputs), outputs=outputs, name=name or f"{model.name}_internals")
        self.family = type(backbone).__name__
        self.input_names = sorted(inputs)
        self.num_layers = len(hidden_states)
        self.embedding_dim = int(embedding.shape[-1])
        self.hidden_dims = [int(h.shape[-1]) for h in hidden_states]
        self.num_heads = [int(a.shape[1]) for a in attentions] if attention else None
        self.has_logits = "logits" in outputs
        self.num_classes = int(outputs["logits"].shape[-1]) if self.has_logits else None
        self.with_attention = attention

    def select_inputs(self, x: dict) -> dict:
        """The entries of a feature dict this model takes; segment_ids filled with zeros when missing (a dataset
        tokenized for DistilBERT/RoBERTa feeding a BERT), extra entries (segment_ids for DistilBERT) dropped."""
        if not isinstance(x, dict):
            raise TypeError(f"expected a dict of token tensors (token_ids, padding_mask[, segment_ids]) as made by "
                            f"tfbertopt.data.pipeline.encode / make_dataset, got {type(x).__name__}")
        missing = [k for k in self.input_names if k not in x and k != "segment_ids"]
        if missing:
            raise ValueError(f"the features lack {missing}; {self.family} takes {self.input_names}")
        out = {k: x[k] for k in self.input_names if k in x}
        if "segment_ids" in self.input_names and "segment_ids" not in x:
            out["segment_ids"] = keras.ops.zeros_like(x["token_ids"])
        return out


def _head(model, backbone, x):
    """The classifier head applied to the last hidden states `x`, as keras-hub's classifiers do."""
    if getattr(model, "pooled_dense", None) is not None:        # DistilBERT, RoBERTa: [CLS] -> dense -> output
        index = getattr(backbone, "cls_token_index", getattr(backbone, "start_token_index", 0))
        h = x[:, index, :]
        if getattr(model, "pooled_dropout", None) is not None:
            h = model.pooled_dropout(h)
        h = model.pooled_dense(h)
    else:                                                       # BERT, ALBERT, ELECTRA: backbone's pooler
        pooler = next((l for l in backbone.layers if l.name == "pooled_dense"), None)
        if pooler is None:
            raise UnsupportedModelError(f"{type(backbone).__name__} has no pooled_dense layer for "
                                        f"{type(model).__name__}'s head")
        h = pooler(x[:, getattr(backbone, "cls_token_index", 0), :])
    return model.output_dense(model.output_dropout(h))


def is_keras_hub_model(model) -> bool:
    """Whether `model` is a keras-hub task or backbone (something `IntermediateModel` may understand)."""
    import keras_hub

    return isinstance(model, (keras_hub.models.Task, keras_hub.models.Backbone))


class LogitsOnlyModel(keras.Model):
    """The view of a plain Keras classifier (feature dict -> logits) that is not a keras-hub transformer: its
    output dict has `logits` only. Same attributes as `IntermediateModel` (`num_layers` 0, no hidden widths).

    Raises:
      UnsupportedModelError: the model does not take a feature dict with token_ids and padding_mask, or does not
        output one [batch, classes] tensor.
    """

    def __init__(self, model, name: str | None = None):
        super().__init__(name=name or f"{model.name}_logits_view")
        inputs = getattr(model, "input", None)
        if not isinstance(inputs, dict) or "token_ids" not in inputs or "padding_mask" not in inputs:
            raise UnsupportedModelError(
                f"{type(model).__name__} ({model.name}) is neither a keras-hub BERT-family model nor a functional "
                f"Keras model taking a dict with token_ids and padding_mask; distillation cannot feed it")
        output = getattr(model, "output", None)
        if not isinstance(output, keras.KerasTensor) or len(output.shape) != 2:
            raise UnsupportedModelError(f"{type(model).__name__} ({model.name}) must output one [batch, classes] "
                                        f"logits tensor, got {output}")
        self.wrapped = model
        self.family = type(model).__name__
        self.input_names = sorted(inputs)
        self.num_layers = 0
        self.embedding_dim = None
        self.hidden_dims = []
        self.num_heads = None
        self.has_logits = True
        self.num_classes = int(output.shape[-1])
        self.with_attention = False

    def call(self, inputs, training=False):
        return {"logits": self.wrapped(inputs, training=training)}

    select_inputs = IntermediateModel.select_inputs


def internals_view(model, attention: bool = True):
    """`IntermediateModel(model, attention)` for keras-hub models, `LogitsOnlyModel(model)` for other Keras
    classifiers (which have no attention: asking for it raises AttentionUnavailableError)."""
    if is_keras_hub_model(model):
        return IntermediateModel(model, attention=attention)
    if attention:
        raise AttentionUnavailableError(
            f"{type(model).__name__} ({model.name}) is not a transformer: it has no attention probabilities")
    return LogitsOnlyModel(model)


def vocabulary_of(model) -> list | None:
    """The token vocabulary of a model's tokenizer, or None when it has none (or none loaded)."""
    preprocessor = getattr(model, "preprocessor", None)
    tokenizer = getattr(preprocessor, "tokenizer", None)
    get = getattr(tokenizer, "get_vocabulary", None)
    if get is None:
        return None
    try:
        return list(get())
    except Exception:   # a tokenizer without a loaded vocabulary
        return None


def vocabulary_size(model) -> int | None:
    """Rows of the model's token-embedding table (keras-hub models; other models with an Embedding layer named
    `token_embedding`), or None when it has none."""
    if is_keras_hub_model(model):
        return int(find_kernels(model, roles=["token_embedding"])[0].shape[0])
    try:
        return int(model.get_layer("token_embedding").input_dim)
    except (ValueError, AttributeError):
        return None
