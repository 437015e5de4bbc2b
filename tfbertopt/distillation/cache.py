"""Teacher-output cache: run the teacher once over a dataset, then distil from disk at the cost of a student step.

`cache_teacher_outputs(teacher, examples_or_features, path)` first computes and prints the size the cache will
take (from shapes, before running anything) and refuses above `max_bytes` (default 1 GB; `max_bytes=None` lifts
the limit). It then writes a folder of plain `.npy` arrays (read back with `allow_pickle=False`, memory-mapped) and a
`meta.json`:

| file | shape |
| --- | --- |
| `keys.npy` | [n] bytes: the example's real token ids, "101,2204,102," (its identity, see below) |
| `logits.npy` | [n, classes] |
| `hidden_<j>.npy` | [n, width, hidden] teacher hidden states after encoder layer j (0-based) |
| `attention_<j>.npy` | [n, heads, width, width] attention probabilities of layer j |
| `embedding.npy` | [n, width, hidden] embedding output |

`width` is the longest example's real length (not the preprocessor's sequence length), so short-sentence tasks
cost little. `TeacherCache(path)` loads it; pass it wherever a teacher goes: `Distiller(student, TeacherCache(path),
config)` or `tfbertopt.train.finetune(student, train, dev, teacher=TeacherCache(path), distillation=config)`.

Alignment: batches are shuffled and padded per batch by `make_dataset`, so the cache is looked up by content: each
batch row's real token ids are joined into the same key as at cache time and found in a hash table (duplicates in
the data have identical teacher outputs, so any copy serves). The cached rows are then cut (or zero-padded) to the
batch's width. A batch row the cache does not hold stops training with an error naming the cache. The lookup uses
TensorFlow string and hash-table ops, so it runs under `model.fit` with the TensorFlow backend; the `Distiller`
turns XLA off for caches (`jit_compile=False`).

A student with another tokenizer than the teacher's (a trimmed vocabulary) learns from a cache made with
`student=`: the teacher reads every text through its own tokenizer and the rows are keyed by the student's token
ids (logits only).

The teacher is run in inference mode (no dropout), as the live `Distiller` does, so a cache gives the same loss
terms as the live teacher up to float rounding (`dtype="float16"` halves the size at lower precision).

Example:

>>> import os, tempfile
>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.data.demo import demo_examples, demo_vocabulary
>>> from tfbertopt.distillation.cache import TeacherCache, cache_teacher_outputs, estimate_cache_bytes
>>> teacher = tiny_bert_classifier(demo_vocabulary(), hidden_dim=16, intermediate_dim=32, sequence_length=16)
>>> train = demo_examples("train", 64)
>>> estimate_cache_bytes(teacher, train, hidden_layers=[1])["total"] > 64 * 2 * 4
True
>>> path = os.path.join(tempfile.mkdtemp(), "cache")
>>> cache = cache_teacher_outputs(teacher, train, path, hidden_layers=[1], verbose=0)
>>> cache.num_examples, cache.hidden_layers
(64, [1])
>>> TeacherCache(path).logits.shape
(64, 2)
>>> cache_teacher_outputs(teacher, train, path + "2", hidden_layers=[1], max_bytes=100, verbose=0)
Traceback (most recent call last):
...
tfbertopt.distillation.cache.CacheTooLargeError: the teacher cache would take ... bytes (...), above max_bytes=100; ...
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time

import numpy as np

from tfbertopt.data.pipeline import encode, lengths, predict_batches
from tfbertopt.distillation.internals import IntermediateModel, vocabulary_of, vocabulary_size

FORMAT_VERSION = 1
DEFAULT_MAX_BYTES = 10 ** 9


class CacheTooLargeError(ValueError):
    """The estimated cache size is above `max_bytes`."""


class CacheMismatchError(ValueError):
    """The cache was made for other examples, another tokenizer or another label space than it is used with."""


def _features(teacher, data) -> dict:
    if isinstance(data, dict):
        if "token_ids" not in data or "padding_mask" not in data:
            raise ValueError(f"a feature dict needs token_ids and padding_mask (from tfbertopt.data.pipeline.encode), "
                             f"got keys {sorted(data)}")
        return {k: np.asarray(v) for k, v in data.items()}
    texts = getattr(data, "texts", None)
    if texts is None:
        raise TypeError(f"expected GLUE Examples or a feature dict from encode(), got {type(data).__name__}")
    if getattr(teacher, "preprocessor", None) is None:
        raise ValueError("the teacher has no preprocessor to tokenize the examples with; pass encode()d features")
    return encode(texts, teacher.preprocessor)


def row_keys(token_ids, padding_mask):
    """One string per example: its real token ids joined as "id,id,...,"; independent of the padded width.
    Works on numpy arrays and inside `tf.function` (returns a tf string tensor)."""
    import tensorflow as tf

    ids = tf.strings.as_string(tf.cast(token_ids, tf.int64))
    parts = tf.where(tf.cast(padding_mask, tf.bool), tf.strings.join([ids, ","]), "")
    return tf.strings.reduce_join(parts, axis=1)


def vocabulary_fingerprint(model) -> tuple[int | None, str | None]:
    """(vocabulary size, sha256 of the tokenizer's vocabulary) of a model, each None when unknown."""
    vocab = vocabulary_of(model)
    digest = hashlib.sha256("\n".join(map(str, vocab)).encode()).hexdigest() if vocab is not None else None
    return vocabulary_size(model), digest


def _plan(teacher, features, logits, hidden_layers, attention_layers, embedding, dtype):
    """Shapes of every array the cache would hold, and the teacher's internals view and metadata."""
    hidden_layers = sorted(set(hidden_layers or []))
    attention_layers = sorted(set(attention_layers or []))
    view = IntermediateModel(teacher, attention=bool(attention_layers))
    for name, layers in (("hidden_layers", hidden_layers), ("attention_layers", attention_layers)):
        bad = [j for j in layers if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < view.num_layers]
        if bad:
            raise ValueError(f"{name} {bad} are not 0-based layers of the teacher's {view.num_layers} encoder "
                             f"layers (0..{view.num_layers - 1})")
    if not (logits or hidden_layers or attention_layers or embedding):
        raise ValueError("nothing to cache: set logits=True, hidden_layers, attention_layers or embedding=True")
    n = len(features["token_ids"])
    width = int(lengths(features).max())
    shapes = {}
    if logits:
        shapes["logits"] = (n, view.num_classes)
    for j in hidden_layers:
        shapes[f"hidden_{j}"] = (n, width, view.hidden_dims[j])
    for j in attention_layers:
        shapes[f"attention_{j}"] = (n, view.num_heads[j], width, width)
    if embedding:
        shapes["embedding"] = (n, width, view.embedding_dim)
    itemsize = np.dtype(dtype).itemsize
    sizes = {name: int(np.prod(shape)) * itemsize for name, shape in shapes.items()}
    meta = {"format_version": FORMAT_VERSION, "num_examples": n, "width": width, "dtype": np.dtype(dtype).name,
            "teacher": teacher.name, "num_classes": view.num_classes, "num_layers": view.num_layers,
            "hidden_dims": view.hidden_dims, "embedding_dim": view.embedding_dim, "num_heads": view.num_heads,
            "logits": bool(logits), "hidden_layers": hidden_layers, "attention_layers": attention_layers,
            "embedding": bool(embedding)}
    return shapes, sizes, view, meta


def estimate_cache_bytes(teacher, data, logits: bool = True, hidden_layers=None, attention_layers=None,
                         embedding: bool = False, dtype: str = "float32") -> dict:
    """Bytes each cached array would take (`{"total": ..., "logits": ..., "hidden_3": ...}`), from shapes only."""
    features = _features(teacher, data)
    _, sizes, _, _ = _plan(teacher, features, logits, hidden_layers, attention_layers, embedding, dtype)
    keys = np.asarray(row_keys(features["token_ids"], features["padding_mask"])).astype(bytes).nbytes
    return {"total": sum(sizes.values()) + keys, "keys": keys, **sizes}


def _human(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1000


def cache_teacher_outputs(teacher, data, path, logits: bool = True, hidden_layers=None, attention_layers=None,
                          embedding: bool = False, dtype: str = "float32", batch_size: int = 64,
                          max_bytes: int | None = DEFAULT_MAX_BYTES, overwrite: bool = False,
                          verbose: int = 1, student=None) -> "TeacherCache":
    """Runs `teacher` (inference mode) once over `data` and writes its outputs to the folder `path`.

    Args:
      teacher: a keras-hub BERT-family classifier.
      data: GLUE `Examples` (tokenized with the teacher's preprocessor) or a feature dict from `encode`.
      path: a folder to create.
      logits / hidden_layers / attention_layers / embedding: what to keep: the logits, hidden states and
        attention probabilities of these 0-based encoder layers, the embedding output.
      dtype: "float32" (exact) or "float16" (half the size).
      max_bytes: refuse (CacheTooLargeError) when the estimate is above this; None for no limit.
      overwrite: replace an existing cache at `path`.
      verbose: 1 prints the size estimate before computing.
      student: a student whose tokenizer is not the teacher's (a trimmed vocabulary, `tfbertopt.vocabulary`): the
        teacher still reads each text through its own tokenizer, and the rows are keyed by the student's token ids,
        so the student trains on its own tokenization against the teacher's outputs for the same text. Needs
        `Examples` (texts), and logits only: the other outputs are per token of the teacher's tokenization.

    Returns: the `TeacherCache` (its `size_bytes` is the estimate that was printed).

    Raises:
      CacheTooLargeError: above `max_bytes`, before anything is computed or written.
      FileExistsError: `path` exists and `overwrite` is False.
      ValueError: layers outside the teacher, nothing to cache, an unknown dtype.
    """
    if np.dtype(dtype).name not in ("float32", "float16"):
        raise ValueError(f"dtype must be 'float32' or 'float16', got {dtype!r}")
    features = _features(teacher, data)
    key_features = features if student is None else _student_features(student, data, hidden_layers,
                                                                       attention_layers, embedding)
    estimate = estimate_cache_bytes(teacher, features, logits, hidden_layers, attention_layers, embedding, dtype)
    shapes, _, view, meta = _plan(teacher, features, logits, hidden_layers, attention_layers, embedding, dtype)
    total = estimate["total"]
    detail = ", ".join(f"{k} {_human(v)}" for k, v in estimate.items() if k not in ("total", "keys"))
    if verbose:
        print(f"teacher cache: {meta['num_examples']} examples x width {meta['width']}: {_human(total)} ({detail})",
              flush=True)
    if max_bytes is not None and total > max_bytes:
        raise CacheTooLargeError(
            f"the teacher cache would take {total} bytes ({_human(total)}: {detail}), above max_bytes={max_bytes}; "
            f"cache fewer layers, use dtype='float16', or pass a larger max_bytes (None: no limit)")
    if os.path.exists(path):
        if not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True to replace the cache")
        shutil.rmtree(path)
    tmp = f"{path}.partial"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    keys = np.asarray(row_keys(key_features["token_ids"], key_features["padding_mask"]))
    np.save(os.path.join(tmp, "keys.npy"), keys.astype(bytes), allow_pickle=False)
    arrays = {name: np.lib.format.open_memmap(os.path.join(tmp, f"{name}.npy"), mode="w+", dtype=dtype,
                                              shape=shape) for name, shape in shapes.items()}
    for array in arrays.values():
        array[...] = 0
    names = [k for k in ("token_ids", "padding_mask", "segment_ids") if k in features]
    inputs = {k: np.asarray(v) for k, v in view.select_inputs({k: features[k] for k in names}).items()}
    batches = -(-meta["num_examples"] // batch_size)
    every = max(1, batches // 10)
    started = time.time()
    for i, (rows, out) in enumerate(predict_batches(view, inputs, batch_size)):
        if verbose and i and i % every == 0:
            per = (time.time() - started) / i
            print(f"teacher cache: batch {i}/{batches}, ~{per * (batches - i) / 60:.1f} min left (shortest "
                  f"first)", flush=True)
        if "logits" in arrays:
            arrays["logits"][rows] = out["logits"]
        for j in meta["hidden_layers"]:      # batch widths are rounded up: keep the cache's width at most
            w = min(out["hidden_states"][j].shape[1], meta["width"])
            arrays[f"hidden_{j}"][rows, :w] = out["hidden_states"][j][:, :w]
        for j in meta["attention_layers"]:
            w = min(out["attentions"][j].shape[-1], meta["width"])
            arrays[f"attention_{j}"][rows, :, :w, :w] = out["attentions"][j][:, :, :w, :w]
        if "embedding" in arrays:
            w = min(out["embedding"].shape[1], meta["width"])
            arrays["embedding"][rows, :w] = out["embedding"][:, :w]
    for array in arrays.values():
        array.flush()
    del arrays
    size, digest = vocabulary_fingerprint(teacher if student is None else student)
    meta.update(vocabulary_size=size, vocabulary_sha256=digest, size_bytes=total,
                keyed_by=None if student is None else student.name)
    with open(os.path.join(tmp, "meta.json"), "w") as f:
        json.dump(meta, f, indent=2)
    os.replace(tmp, path)
    return TeacherCache(path)


def _student_features(student, data, hidden_layers, attention_layers, embedding) -> dict:
    """The student's tokenization of `data`'s texts, to key a cache of the teacher's outputs for them."""
    if getattr(data, "texts", None) is None:
        raise TypeError("keying a cache by a student's tokenizer needs the texts (GLUE Examples), not features")
    if hidden_layers or attention_layers or embedding:
        raise ValueError("a cache keyed by a student's tokenizer holds logits only: hidden states, attention and "
                         "the embedding output are per token of the teacher's tokenization, which the student's "
                         "does not share")
    if getattr(student, "preprocessor", None) is None:
        raise ValueError(f"the student ({student.name}) has no preprocessor to key the cache with")
    return encode(data.texts, student.preprocessor)


class TeacherCache:
    """A cache written by `cache_teacher_outputs`, usable as a teacher by `Distiller` / `finetune(teacher=...)`.

    Attributes mirror a teacher's internals view (`num_classes`, `num_layers`, `hidden_dims`, `embedding_dim`,
    `num_heads`) plus what was cached (`has_logits`, `hidden_layers`, `attention_layers`, `has_embedding`),
    `num_examples`, `width`, `size_bytes` and the arrays (`logits`, `arrays`: name -> memory-mapped array).

    Raises:
      FileNotFoundError / CacheMismatchError: no cache at `path`, or one of another format version.
    """

    trainable = False
    weights = ()

    def __init__(self, path, name: str | None = None):
        meta_path = os.path.join(str(path), "meta.json")
        if not os.path.exists(meta_path):
            raise FileNotFoundError(f"no teacher cache at {path} (no meta.json); write one with "
                                    f"cache_teacher_outputs(teacher, data, path)")
        with open(meta_path) as f:
            meta = json.load(f)
        if meta.get("format_version") != FORMAT_VERSION:
            raise CacheMismatchError(f"{path}: cache format {meta.get('format_version')}, this tfbertopt reads "
                                     f"{FORMAT_VERSION}; rebuild it")
        self.path, self.meta = str(path), meta
        self.name = name or f"cache({meta['teacher']})"
        self.num_examples, self.width = meta["num_examples"], meta["width"]
        self.num_classes, self.num_layers = meta["num_classes"], meta["num_layers"]
        self.hidden_dims, self.embedding_dim, self.num_heads = meta["hidden_dims"], meta["embedding_dim"], \
            meta["num_heads"]
        self.has_logits, self.hidden_layers = meta["logits"], meta["hidden_layers"]
        self.attention_layers, self.has_embedding = meta["attention_layers"], meta["embedding"]
        self.vocabulary_size, self.vocabulary_sha256 = meta["vocabulary_size"], meta["vocabulary_sha256"]
        self.size_bytes = meta["size_bytes"]
        self.keys = np.load(os.path.join(self.path, "keys.npy"), allow_pickle=False)
        self.arrays = {}
        for name in (["logits"] if self.has_logits else []) + [f"hidden_{j}" for j in self.hidden_layers] + \
                [f"attention_{j}" for j in self.attention_layers] + (["embedding"] if self.has_embedding else []):
            self.arrays[name] = np.load(os.path.join(self.path, f"{name}.npy"), allow_pickle=False, mmap_mode="r")
            if self.arrays[name].shape[0] != self.num_examples:
                raise CacheMismatchError(f"{path}: {name}.npy has {self.arrays[name].shape[0]} rows, meta.json says "
                                         f"{self.num_examples} examples; the cache is damaged, rebuild it")
        self._table = None
        self._tensors = None

    @property
    def logits(self):
        return self.arrays.get("logits")

    def __repr__(self):
        return f"TeacherCache({self.path!r}, {self.num_examples} examples, {sorted(self.arrays)})"

    def check_features(self, data, model=None) -> None:
        """Raises CacheMismatchError unless `data` (a feature dict, or Examples with `model`'s preprocessor) are the
        examples the cache was made from (same count and token ids, in any order)."""
        features = _features(model, data) if not isinstance(data, dict) else data
        n = len(features["token_ids"])
        if n != self.num_examples:
            raise CacheMismatchError(f"the teacher cache at {self.path} holds {self.num_examples} examples but the "
                                     f"training data has {n}; rebuild it for this data (cache_teacher_outputs)")
        keys = np.asarray(row_keys(features["token_ids"], features["padding_mask"])).astype(bytes)
        missing = np.flatnonzero(~np.isin(keys, self.keys))
        if len(missing):
            raise CacheMismatchError(f"{len(missing)} of {n} training examples (first: index {missing[0]}) are not in "
                                     f"the teacher cache at {self.path}: other data or another tokenization; "
                                     f"rebuild it for this data")

    def check_vocabulary(self, model) -> None:
        """Raises CacheMismatchError when `model`'s tokenizer differs from the one the cache's rows are keyed by (the
        teacher's, or the student's it was made for)."""
        size, digest = vocabulary_fingerprint(model)
        if (size is not None and self.vocabulary_size is not None and size != self.vocabulary_size) or \
                (digest is not None and self.vocabulary_sha256 is not None and digest != self.vocabulary_sha256):
            raise CacheMismatchError(
                f"{model.name} uses another vocabulary (size {size}) than the teacher the cache at {self.path} was "
                f"made with (size {self.vocabulary_size}), so its token ids would find the wrong (or no) cached "
                f"rows; distil over the teacher's tokenizer or rebuild the cache")

    def _build(self):
        import tensorflow as tf

        unique, first = np.unique(self.keys, return_index=True)     # duplicates have identical outputs
        self._table = tf.lookup.StaticHashTable(
            tf.lookup.KeyValueTensorInitializer(tf.constant(unique), tf.constant(first, tf.int64)), default_value=-1)
        self._tensors = {name: tf.constant(np.asarray(array)) for name, array in self.arrays.items()}

    def lookup(self, x) -> dict:
        """The cached teacher outputs for a batch of features `x`, in the layout of `IntermediateModel`'s output
        (`hidden_states` / `attentions` are dicts layer -> tensor), cut or zero-padded to the batch's width."""
        import tensorflow as tf

        if self._table is None:
            with tf.init_scope():     # built once, eagerly, even when first called inside a tf.function
                self._build()
        keys = row_keys(x["token_ids"], x["padding_mask"])
        index = self._table.lookup(keys)
        check = tf.debugging.assert_non_negative(
            index, message=f"a batch holds examples that are not in the teacher cache at {self.path}: the cache "
                           f"was made for other data or another tokenization; rebuild it for this data")
        with tf.control_dependencies([check]):
            index = tf.identity(index)
        width = tf.shape(x["token_ids"])[1]

        def fit(array, axes):
            rows = tf.cast(tf.gather(self._tensors[array], index), tf.float32)
            pad = tf.maximum(width - self.width, 0)
            paddings = [[0, pad] if a in axes else [0, 0] for a in range(len(rows.shape))]
            rows = tf.pad(rows, paddings)
            begin = [0] * len(rows.shape)
            size = [width if a in axes else -1 for a in range(len(rows.shape))]
            return tf.slice(rows, begin, size)

        out = {}
        if self.has_logits:
            out["logits"] = tf.cast(tf.gather(self._tensors["logits"], index), tf.float32)
        out["hidden_states"] = {j: fit(f"hidden_{j}", (1,)) for j in self.hidden_layers}
        out["attentions"] = {j: fit(f"attention_{j}", (2, 3)) for j in self.attention_layers}
        if self.has_embedding:
            out["embedding"] = fit("embedding", (1,))
        return out

    def check_terms(self, active_terms, layer_maps: dict | None) -> None:
        """ValueError naming what to cache when the distillation terms need outputs this cache lacks."""
        needed = []
        if "logits" in active_terms and not self.has_logits:
            needed.append("logits=True")
        if "embedding" in active_terms and not self.has_embedding:
            needed.append("embedding=True")
        layers = sorted(set((layer_maps or {}).values()))
        if any(t in active_terms for t in ("hidden", "cls")):
            lacking = [j for j in layers if j not in self.hidden_layers]
            if lacking:
                needed.append(f"hidden_layers including {lacking}")
        if "attention" in active_terms:
            lacking = [j for j in layers if j not in self.attention_layers]
            if lacking:
                needed.append(f"attention_layers including {lacking}")
        if needed:
            raise ValueError(f"the distillation terms {list(active_terms)} need teacher outputs that the cache at "
                             f"{self.path} does not hold; rebuild it with {', '.join(needed)}")
