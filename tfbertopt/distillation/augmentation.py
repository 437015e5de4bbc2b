"""Data augmentation for distillation: TinyBERT's word replacement, labelled by the teacher.

TinyBERT (Jiao et al., 2020) distils a small student over the task's text plus copies of it in which words are
replaced by near neighbours, with the teacher's outputs as targets: the student sees many more inputs near the
task's distribution than the labelled set holds, and the teacher says what each is. TinyBERT draws a single-piece
word's replacements from BERT's masked-LM predictions and other words' from GloVe; a fine-tuned classifier carries
neither, so here a word's candidates are the whole-word pieces nearest to it by cosine similarity of the teacher's
own token-embedding rows (which place inflections, synonyms and co-occurring words close together).

- `word_pieces(model)`: the whole-word pieces of the model's tokenizer (WordPiece, SentencePiece or byte-level BPE
  vocabularies), as words with their token-table rows.
- `embedding_neighbours(model, words, k)`: each word's k nearest whole-word pieces.
- `augment_texts(texts, neighbours, copies, probability, seed)`: the augmented copies (strings or sentence pairs).
- `augment_examples(teacher, examples, ...)`: the examples followed by their augmented copies, each copy labelled by
  the teacher's prediction (an augmented "great" may have become "awful": the gold label no longer holds);
  `augmented_copies` and `with_copies` are its two halves, for a caller that runs the teacher over the copies anyway.

The distill stage takes it as `augment: {copies: 4}` (docs/distillation.md); with `cache: true` the teacher cache
covers the copies, and its logits label them (one teacher pass). Replacement works on the letters-only runs of each text, so punctuation and numbers stay.

>>> from tfbertopt.data.demo import demo_examples, demo_vocabulary
>>> from tfbertopt.models import tiny_bert_classifier
>>> teacher = tiny_bert_classifier(demo_vocabulary())
>>> more = augment_examples(teacher, demo_examples("train", 8), copies=2, probability=0.5, seed=0)
augmentation: 14 copies of 8 examples; the teacher labels them
>>> len(more) > 8, more.texts[:8] == demo_examples("train", 8).texts
(True, True)
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import replace

import numpy as np

from tfbertopt.data.pipeline import encode
from tfbertopt.evaluation import predict_logits, predictions_from_logits

# Word-start markers: SentencePiece's "▁" and byte-level BPE's "Ġ"; WordPiece marks continuations ("##") instead.
WORD_START_MARKERS = ("\u2581", "\u0120")
WORD = re.compile(r"[^\W\d_]{2,}")


def _tokenizer(model):
    tokenizer = getattr(getattr(model, "preprocessor", None), "tokenizer", None)
    if tokenizer is None or not hasattr(tokenizer, "get_vocabulary"):
        raise ValueError(f"{type(model).__name__} has no tokenizer with a vocabulary: augmentation picks "
                         f"replacement words from the model's own vocabulary, so it needs the classifier with its "
                         f"preprocessor")
    return tokenizer


def _lowercase(tokenizer) -> bool:
    return bool(getattr(tokenizer, "lowercase", False))


def word_pieces(model) -> tuple[list[str], np.ndarray]:
    """The tokenizer's whole-word pieces of two or more letters, as words (markers stripped), with their ids."""
    vocab = [str(t) for t in _tokenizer(model).get_vocabulary()]
    marked = any(t.startswith(WORD_START_MARKERS) for t in vocab)
    words, ids = {}, []
    for i, token in enumerate(vocab):
        if marked:
            if not token.startswith(WORD_START_MARKERS):
                continue
            token = token[1:]
        elif token.startswith("##"):
            continue
        if WORD.fullmatch(token) and token not in words:
            words[token] = i
            ids.append(i)
    return list(words), np.asarray(ids, np.int64)


def _token_table(model) -> np.ndarray:
    backbone = getattr(model, "backbone", None)
    layer = getattr(backbone, "token_embedding", None)
    if layer is None:
        raise ValueError(f"{type(model).__name__} has no backbone.token_embedding: augmentation ranks replacement "
                         f"words by the teacher's token-embedding rows")
    return np.asarray(layer.embeddings, np.float32)


def embedding_neighbours(model, words: Iterable[str] | None = None, k: int = 15,
                         chunk: int = 1024) -> dict[str, list[str]]:
    """The `k` whole-word pieces nearest (cosine, the model's token table) to each of `words` that is one (all the
    model's whole-word pieces when `words` is None), nearest first, the word itself left out."""
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    vocab_words, ids = word_pieces(model)
    if len(vocab_words) < 2:
        return {}
    table = _token_table(model)[ids]
    table /= np.maximum(np.linalg.norm(table, axis=1, keepdims=True), 1e-12)
    index = {w: i for i, w in enumerate(vocab_words)}
    rows = list(index.values()) if words is None else sorted({index[w] for w in words if w in index})
    k = min(k, len(vocab_words) - 1)
    out = {}
    for start in range(0, len(rows), chunk):
        part = np.asarray(rows[start:start + chunk])
        similarity = table[part] @ table.T
        similarity[np.arange(len(part)), part] = -np.inf
        top = np.argpartition(-similarity, k, axis=1)[:, :k]
        order = np.argsort(-np.take_along_axis(similarity, top, axis=1), axis=1)
        for row, near in zip(part, np.take_along_axis(top, order, axis=1)):
            out[vocab_words[row]] = [vocab_words[j] for j in near]
    return out


def text_words(texts: Iterable, lowercase: bool = True) -> set[str]:
    """The words (letter runs of two or more) of `texts` (strings or segment tuples), as the lookup keys."""
    words = set()
    for text in texts:
        for segment in (text,) if isinstance(text, str) else text:
            words.update(w.lower() if lowercase else w for w in WORD.findall(segment))
    return words


def augment_texts(texts: list, neighbours: dict[str, list[str]], copies: int = 4, probability: float = 0.4,
                  seed: int = 0, lowercase: bool = True) -> tuple[list, list[int]]:
    """Up to `copies` augmented versions of each text: each word with neighbours is replaced, with `probability`, by
    one of them drawn uniformly. Copies identical to their text or to an earlier copy are left out. Returns the new
    texts and, for each, the index of the text it came from; the same arguments give the same copies."""
    if copies < 0:
        raise ValueError(f"copies must be 0 or more, got {copies}")
    if not 0.0 <= probability <= 1.0:
        raise ValueError(f"probability must lie in [0, 1], got {probability}")
    rng = np.random.default_rng(seed)

    def swap(match):
        word = match.group(0)
        near = neighbours.get(word.lower() if lowercase else word)
        if not near or rng.random() >= probability:
            return word
        return near[int(rng.integers(len(near)))]

    out, source = [], []
    for i, text in enumerate(texts):
        segments = (text,) if isinstance(text, str) else tuple(text)
        seen = {segments}
        for _ in range(copies):
            new = tuple(WORD.sub(swap, s) for s in segments)
            if new in seen:
                continue
            seen.add(new)
            out.append(new[0] if isinstance(text, str) else new)
            source.append(i)
    return out, source


def augmented_copies(teacher, examples, copies: int = 4, probability: float = 0.4, neighbours: int = 15,
                     seed: int = 0) -> list:
    """The augmented copies (`augment_texts`) of `examples`' texts, with neighbours from the teacher's token table."""
    lowercase = _lowercase(_tokenizer(teacher))
    near = embedding_neighbours(teacher, text_words(examples.texts, lowercase), k=neighbours)
    return augment_texts(examples.texts, near, copies=copies, probability=probability, seed=seed,
                         lowercase=lowercase)[0]


def with_copies(examples, texts: list, logits: np.ndarray | None = None):
    """`examples` followed by `texts`, labelled by the teacher's `logits` for them (its class, or its score for
    regression tasks); without logits, with placeholder labels (0) for a teacher pass to replace."""
    if logits is None:
        labels = np.zeros(len(texts), examples.labels.dtype)
    else:
        if len(logits) != len(texts):
            raise ValueError(f"{len(logits)} rows of teacher logits for {len(texts)} augmented texts")
        labels = predictions_from_logits(examples.task, np.asarray(logits)).astype(examples.labels.dtype)
    return replace(examples, texts=list(examples.texts) + list(texts),
                   labels=np.concatenate([examples.labels, labels]),
                   source=f"{examples.source} + {len(texts)} augmented copies")


def augment_examples(teacher, examples, copies: int = 4, probability: float = 0.4, neighbours: int = 15,
                     seed: int = 0, batch_size: int = 64):
    """`examples` followed by their augmented copies (`augmented_copies`), each labelled by the teacher's
    prediction (one teacher pass over the copies)."""
    texts = augmented_copies(teacher, examples, copies, probability, neighbours, seed)
    if not texts:
        return examples
    print(f"augmentation: {len(texts)} copies of {len(examples)} examples; the teacher labels them", flush=True)
    logits = predict_logits(teacher, encode(texts, teacher.preprocessor), batch_size=batch_size)
    return with_copies(examples, texts, logits)
