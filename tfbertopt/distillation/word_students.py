"""Non-transformer students over the teacher's word embeddings (Tang et al. 2019, "Distilling Task-Specific
Knowledge from BERT into Simple Neural Networks"): a one-layer BiLSTM and a Kim (2014) CNN.

- `bilstm_student(teacher, units=...)`: token embeddings (a copy of the teacher's word-embedding table, trainable
  or frozen; optionally projected to a smaller width) -> one bidirectional LSTM -> max-pool over the real tokens
  -> ReLU dense -> logits. Tang et al.'s model has the same shape (their embeddings are word2vec, here the
  teacher's WordPiece table, so the teacher's tokenizer is kept).
- `cnn_student(teacher, filters=..., kernel_sizes=...)`: the same embeddings -> one 1-D convolution per kernel
  size (ReLU) -> max-pool over the real tokens -> concatenation -> logits.

Both are ordinary functional Keras models (`LstmStudent`, `CnnStudent`, registered as `tfbertopt>...`) that take
the teacher's feature dict (`token_ids`, `padding_mask` and, when the teacher has them, `segment_ids`) and output
logits. On sentence pairs they run over the packed pair by default; `siamese=True` encodes each sentence alone with
the same weights and classifies [a, b, a * b, |a - b|] (Tang et al.'s pair model).
`tfbertopt.train.finetune/evaluate/predict_logits`, `Distiller` (logits and hard-label terms), `.keras` saving
(`tfbertopt.saving.load_model`) and `tfbertopt.export.litert.export_litert` work on them as on the teacher. `.preprocessor` is the teacher's preprocessor object (saved with the model, like a keras-hub
task's), so `encode(texts, student.preprocessor)` gives the same token ids as for the teacher.

Padding never changes the output: padded positions are zeroed before the convolutions, skipped by the LSTM (Keras
masking) and excluded from the max-pool, so per-batch padding in training and fixed-length LiteRT inputs agree.

LiteRT: the LSTM converts to builtin `WHILE` subgraphs (no Flex ops, no fixed sequence length or unrolling
needed, dynamic shapes work too); the CNN to `CONV_2D`. Neither has hidden states or attention maps that
correspond to a transformer's, so `Distiller` accepts only the logits and hard-label terms for them.

Example:

>>> import numpy as np
>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.data.pipeline import encode
>>> from tfbertopt.distillation.word_students import bilstm_student, cnn_student
>>> teacher = tiny_bert_classifier(["good", "bad", "movie"], hidden_dim=16, intermediate_dim=32)
>>> student = bilstm_student(teacher, units=8, hidden_units=16)
>>> x = encode([("good movie",), ("bad",)], student.preprocessor)
>>> tuple(student(x).shape)
(2, 2)
>>> table = teacher.backbone.token_embedding.embeddings
>>> np.array_equal(student.get_layer("token_embedding").embeddings, table)   # copied from the teacher
True
>>> cnn = cnn_student(teacher, filters=4, kernel_sizes=(2, 3))
>>> narrow = {k: v[:, :4] for k, v in x.items()}     # the same examples padded less: the same logits
>>> bool(np.allclose(cnn(x), cnn(narrow), atol=1e-6))
True
>>> bilstm_student(teacher, units=0)
Traceback (most recent call last):
...
ValueError: units must be a positive integer, got 0
"""

from __future__ import annotations

import keras
from keras import ops

from tfbertopt.kernels import find_kernels, get_backbone

_NEG = -1e9


def _check_positive(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def _check_dropout(value) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value < 1.0:
        raise ValueError(f"dropout must be a number in [0, 1), got {value!r}")
    return float(value)


class WordEmbeddingStudent(keras.Model):
    """Base of the non-transformer students: inputs, embeddings, masked pooling, head and (de)serialization.

    Subclasses implement `_encode(embedded, mask) -> [batch, features]` (already pooled over real tokens).
    Attributes `num_classes`, `vocabulary_size`, `embedding_dim` and `preprocessor` (settable, like a keras-hub
    task's) are public; `kind` names the architecture ("bilstm", "cnn").
    """

    kind = None

    def __init__(self, vocabulary_size: int, embedding_dim: int, num_classes: int = 2,
                 projection_dim: int | None = None, trainable_embeddings: bool = True,
                 hidden_units: int | None = None, dropout: float = 0.1, segment_ids: bool = True,
                 siamese: bool = False, preprocessor=None, name: str | None = None, **kwargs):
        _check_positive("vocabulary_size", vocabulary_size)
        _check_positive("embedding_dim", embedding_dim)
        _check_positive("num_classes", num_classes)
        if projection_dim is not None:
            _check_positive("projection_dim", projection_dim)
        if hidden_units is not None:
            _check_positive("hidden_units", hidden_units)
        dropout = _check_dropout(dropout)
        if siamese and not segment_ids:
            raise ValueError("siamese=True encodes the two sentences of a pair apart, which needs segment_ids; this "
                             "student has none (its teacher takes no segment_ids)")
        inputs = {"token_ids": keras.Input((None,), dtype="int32", name="token_ids"),
                  "padding_mask": keras.Input((None,), dtype="int32", name="padding_mask")}
        if segment_ids:   # taken so the teacher's feature dict and LiteRT signature fit; read only when siamese
            inputs["segment_ids"] = keras.Input((None,), dtype="int32", name="segment_ids")
        embedding = keras.layers.Embedding(vocabulary_size, embedding_dim, name="token_embedding",
                                           trainable=trainable_embeddings)
        mask = ops.cast(inputs["padding_mask"], "bool")
        x = embedding(inputs["token_ids"])
        if projection_dim is not None:
            x = keras.layers.Dense(projection_dim, use_bias=False, name="embedding_projection")(x)
        x = x * ops.cast(mask, x.dtype)[:, :, None]          # padded positions are exact zeros
        x = keras.layers.Dropout(dropout, name="embedding_dropout")(x)
        encode = self._encoder()
        if siamese:
            # Tang et al.'s pair model: one shared encoder over each sentence alone ([CLS] A [SEP] is segment 0,
            # B [SEP] segment 1), then [a, b, a * b, |a - b|] (Conneau et al.'s InferSent features).
            second = ops.cast(inputs["segment_ids"], "bool")
            masks = (ops.logical_and(mask, ops.logical_not(second)), ops.logical_and(mask, second))
            a, b = (encode(x * ops.cast(m, x.dtype)[:, :, None], m) for m in masks)
            features = ops.concatenate([a, b, a * b, ops.abs(a - b)], axis=-1)
        else:
            features = encode(x, mask)
        if hidden_units is not None:
            features = keras.layers.Dense(hidden_units, activation="relu", name="hidden_dense")(features)
        features = keras.layers.Dropout(dropout, name="output_dropout")(features)
        logits = keras.layers.Dense(num_classes, name="logits", dtype="float32")(features)
        super().__init__(inputs=inputs, outputs=logits, name=name or f"{self.kind}_student", **kwargs)
        self.vocabulary_size, self.embedding_dim, self.num_classes = vocabulary_size, embedding_dim, num_classes
        self.projection_dim, self.trainable_embeddings = projection_dim, trainable_embeddings
        self.hidden_units, self.dropout, self.segment_ids = hidden_units, dropout, segment_ids
        self.siamese = bool(siamese)
        self.preprocessor = preprocessor

    @property
    def preprocessor(self):
        """The teacher's keras-hub preprocessor (None while `without_preprocessor` has detached it)."""
        return getattr(self, "_preprocessor", None)

    @preprocessor.setter
    def preprocessor(self, value):
        self._preprocessor = value

    def _encoder(self):
        """A function (embedded [batch, time, dim], mask [batch, time]) -> pooled [batch, features] whose layers
        are created here, once, so that a siamese student applies the same weights to both sentences."""
        raise NotImplementedError

    @staticmethod
    def _masked_max(x, mask):
        """Max over the time axis of [batch, time, features], real tokens only (0 where there are none)."""
        pooled = ops.max(ops.where(mask[:, :, None], x, ops.cast(_NEG, x.dtype)), axis=1)
        return ops.where(ops.any(mask, axis=1)[:, None], pooled, ops.zeros_like(pooled))

    def _own_config(self) -> dict:
        return {}

    def get_config(self):
        return {"vocabulary_size": self.vocabulary_size, "embedding_dim": self.embedding_dim,
                "num_classes": self.num_classes, "projection_dim": self.projection_dim,
                "trainable_embeddings": self.trainable_embeddings, "hidden_units": self.hidden_units,
                "dropout": self.dropout, "segment_ids": self.segment_ids, "siamese": self.siamese,
                "name": self.name,
                "trainable": self.trainable, **self._own_config(),
                "preprocessor": keras.layers.serialize(self.preprocessor) if self.preprocessor is not None
                else None}

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        if isinstance(config.get("preprocessor"), dict):
            config["preprocessor"] = keras.layers.deserialize(config["preprocessor"])
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfbertopt")
class LstmStudent(WordEmbeddingStudent):
    """Embeddings -> Bidirectional(LSTM(units)) -> max-pool over real tokens -> [ReLU dense] -> logits."""

    kind = "bilstm"

    def __init__(self, vocabulary_size: int, embedding_dim: int, units: int = 150, **kwargs):
        self.units = _check_positive("units", units)
        super().__init__(vocabulary_size, embedding_dim, **kwargs)

    def _encoder(self):
        lstm = keras.layers.Bidirectional(keras.layers.LSTM(self.units, return_sequences=True), name="bilstm")
        return lambda x, mask: self._masked_max(lstm(x, mask=mask), mask)

    def _own_config(self):
        return {"units": self.units}


@keras.saving.register_keras_serializable(package="tfbertopt")
class CnnStudent(WordEmbeddingStudent):
    """Kim (2014): embeddings -> Conv1D(filters, k, ReLU) per kernel size k -> max-pool over real tokens -> concat
    -> [ReLU dense] -> logits."""

    kind = "cnn"

    def __init__(self, vocabulary_size: int, embedding_dim: int, filters: int = 100, kernel_sizes=(3, 4, 5),
                 **kwargs):
        self.filters = _check_positive("filters", filters)
        sizes = list(kernel_sizes) if isinstance(kernel_sizes, (list, tuple)) else [kernel_sizes]
        if not sizes:
            raise ValueError("kernel_sizes must name at least one kernel width, e.g. (3, 4, 5)")
        self.kernel_sizes = [_check_positive("kernel_sizes entry", k) for k in sizes]
        super().__init__(vocabulary_size, embedding_dim, **kwargs)

    def _encoder(self):
        # "same" padding: a window centred on a real token sees zeros past the end of the sentence, whatever the
        # batch's padded width, so the pooled features do not depend on padding.
        convs = [keras.layers.Conv1D(self.filters, k, padding="same", activation="relu", name=f"conv_{k}")
                 for k in self.kernel_sizes]

        def encode(x, mask):
            pooled = [self._masked_max(conv(x), mask) for conv in convs]
            return pooled[0] if len(pooled) == 1 else ops.concatenate(pooled, axis=-1)

        return encode

    def _own_config(self):
        return {"filters": self.filters, "kernel_sizes": list(self.kernel_sizes)}


def _teacher_parts(teacher):
    """(embedding table as numpy, num_classes, takes segment_ids, preprocessor) of a keras-hub classifier."""
    backbone = get_backbone(teacher)
    if backbone is teacher or not hasattr(teacher, "num_classes"):
        raise ValueError(f"the teacher must be a keras-hub classifier (its word embeddings, number of classes and "
                         f"preprocessor are reused), got {type(teacher).__name__}")
    table = keras.ops.convert_to_numpy(find_kernels(teacher, roles=["token_embedding"])[0].variable)
    takes_segments = isinstance(backbone.input, dict) and "segment_ids" in backbone.input
    return table, int(teacher.num_classes), takes_segments, getattr(teacher, "preprocessor", None)


def _from_teacher(cls, teacher, trainable_embeddings, projection_dim, hidden_units, dropout, seed, siamese,
                  **kwargs):
    table, num_classes, takes_segments, preprocessor = _teacher_parts(teacher)
    keras.utils.set_random_seed(seed)
    student = cls(table.shape[0], table.shape[1], num_classes=num_classes, projection_dim=projection_dim,
                  trainable_embeddings=trainable_embeddings, hidden_units=hidden_units, dropout=dropout,
                  segment_ids=takes_segments, siamese=siamese, preprocessor=preprocessor, **kwargs)
    student.get_layer("token_embedding").set_weights([table])
    return student


def bilstm_student(teacher, units: int = 150, hidden_units: int | None = 400, projection_dim: int | None = None,
                   trainable_embeddings: bool = True, dropout: float = 0.1, seed: int = 0,
                   siamese: bool = False) -> LstmStudent:
    """Tang et al.'s BiLSTM over a copy of `teacher`'s word-embedding table (see the module docstring).

    Args:
      teacher: a keras-hub classifier; its word embeddings, number of classes, inputs and preprocessor are reused.
      units: LSTM units per direction (the pooled feature has 2 * units values).
      hidden_units: width of the ReLU layer before the logits; None for none.
      projection_dim: project the embeddings to this width (a learned linear map) before the LSTM; None keeps
        the teacher's width.
      trainable_embeddings: fine-tune the copied table (True) or keep it frozen.
      dropout, seed: dropout rate, and the seed of the random initialisation of the other layers.
      siamese: for sentence-pair tasks, encode each sentence of the pair alone with the shared encoder and classify
        [a, b, a * b, |a - b|] (Tang et al.'s pair model); False runs one encoder over the packed pair.

    Raises:
      ValueError: a non-positive size, a dropout outside [0, 1), a teacher that is not a classifier, or siamese
        with a teacher that takes no segment_ids.
    """
    return _from_teacher(LstmStudent, teacher, trainable_embeddings, projection_dim, hidden_units, dropout, seed,
                         siamese, units=units)


def cnn_student(teacher, filters: int = 100, kernel_sizes=(3, 4, 5), hidden_units: int | None = None,
                projection_dim: int | None = None, trainable_embeddings: bool = True, dropout: float = 0.1,
                seed: int = 0, siamese: bool = False) -> CnnStudent:
    """A Kim (2014) CNN over a copy of `teacher`'s word-embedding table: `filters` ReLU filters per kernel width
    in `kernel_sizes`, each max-pooled over the real tokens (other arguments as `bilstm_student`).

    Raises:
      ValueError: a non-positive size or kernel width, no kernel widths, a dropout outside [0, 1), or a teacher
        that is not a classifier.
    """
    return _from_teacher(CnnStudent, teacher, trainable_embeddings, projection_dim, hidden_units, dropout, seed,
                         siamese, filters=filters, kernel_sizes=kernel_sizes)


def is_word_student(model) -> bool:
    """Whether `model` is one of this module's non-transformer students."""
    return isinstance(model, WordEmbeddingStudent)


def student_macs(model, sequence_length: int = 128) -> int:
    """Multiply-accumulates of one forward pass over `sequence_length` tokens (dense, LSTM and conv kernels; the
    embedding lookup is not a MAC): the analogue of `tfbertopt.kernels.count_macs` for these students. A siamese
    student runs its encoder twice, once per sentence, each time over all `sequence_length` positions."""
    if not is_word_student(model):
        raise ValueError(f"student_macs counts LstmStudent/CnnStudent models, got {type(model).__name__}")
    macs = 0
    for layer in model.layers:
        kernels = [w for w in layer.weights if "kernel" in w.path and "embeddings" not in w.path]
        size = sum(int(keras.ops.size(w)) for w in kernels)
        if isinstance(layer, (keras.layers.Bidirectional, keras.layers.Conv1D)):
            macs += (2 if model.siamese else 1) * sequence_length * size     # at every position, per sentence
        elif layer.name == "embedding_projection":
            macs += sequence_length * size          # applied at every position
        elif isinstance(layer, keras.layers.Dense):
            macs += size                            # applied once, after pooling
    return int(macs)
