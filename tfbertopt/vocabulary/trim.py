"""The trimming surgery: a classifier whose token table and WordPiece tokenizer hold only the kept pieces.

`trim_vocabulary(model, keep)` gathers the kept rows of the token table (`V x H`, or `V x E` when the embeddings
are factorized) and builds the model's own tokenizer and preprocessor classes over the kept pieces, in their
original order, through `tfbertopt.surgery.rebuild`. The exported file's MediaPipe metadata takes its `vocab.txt`
from that tokenizer, so table, tokenizer and metadata stay one vocabulary.

`vocabulary_coverage(model, trimmed, texts)` says what trimming costs on text it was not selected from: how many
texts split differently, and how many pieces became `[UNK]`.

Families: BERT, MiniLM, ELECTRA and DistilBERT (WordPiece). ALBERT, XLM-RoBERTa and DeBERTa-v3 tokenize with a
SentencePiece model, RoBERTa with byte-level BPE merges: there a piece's id is its place in a model file whose
pieces (or merge rules) define how every word splits, so `wordpiece.wordpiece_tokenizer` refuses them with that
reason.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from tfbertopt.surgery import as_compressed, rebuild
from tfbertopt.surgery.description import family_of
from tfbertopt.vocabulary.wordpiece import pieces, required_tokens, text_segments, wordpiece_tokenizer


def _trimmed_preprocessor(preprocessor, tokens: list[str]):
    tokenizer = preprocessor.tokenizer
    config = {**tokenizer.get_config(), "vocabulary": list(tokens)}
    config.pop("config_file", None)
    new_tokenizer = type(tokenizer).from_config(config)
    return type(preprocessor).from_config({**preprocessor.get_config(), "tokenizer": new_tokenizer})


def trim_vocabulary(model, keep):
    """A new classifier with only the vocabulary pieces `keep` (a `TokenSelection`, or original token ids).

    Raises:
      UnsupportedModelError: a model without a WordPiece tokenizer (see the module docstring).
      ValueError: ids out of range, repeated, or missing a special token the tokenizer needs.
    """
    tokenizer = wordpiece_tokenizer(model)
    vocab = [str(t) for t in tokenizer.get_vocabulary()]
    ids = np.asarray(getattr(keep, "ids", keep), np.int64).reshape(-1)
    if ids.size == 0 or ids.min() < 0 or ids.max() >= len(vocab):
        raise ValueError(f"kept ids must lie in 0..{len(vocab) - 1}, the tokenizer's vocabulary")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("kept ids repeat; each vocabulary piece can be kept once")
    ids = np.sort(ids)
    tokens = [vocab[i] for i in ids]
    needed = [t for t in required_tokens(tokenizer) if t not in tokens]
    if needed:
        raise ValueError(f"kept ids lack {sorted(needed)}, which the tokenizer needs")
    source = as_compressed(model)
    table = np.asarray(source.backbone.token_embedding.embeddings)
    if table.shape[0] != len(vocab):
        raise ValueError(f"{family_of(model)} model: its tokenizer has {len(vocab)} pieces but its token table "
                         f"{table.shape[0]} rows; trimming needs them to be the same vocabulary")
    return rebuild(source, vocabulary_size=len(ids), values={"token_embedding/embeddings": table[ids]},
                   preprocessor=_trimmed_preprocessor(source.preprocessor, tokens))


def vocabulary_coverage(model, trimmed, texts: Iterable) -> dict:
    """What `trimmed` (from `trim_vocabulary(model, ...)`) tokenizes differently from `model` on `texts` (strings or
    segment tuples): texts, texts split differently, texts with a new `[UNK]`, pieces, new `[UNK]` pieces."""
    before, after = wordpiece_tokenizer(model), wordpiece_tokenizer(trimmed)
    texts = [t if isinstance(t, tuple) else (t,) for t in texts]
    unk = after.oov_token
    report = {"texts": len(texts), "texts_changed": 0, "texts_with_new_unk": 0, "pieces": 0, "new_unk_pieces": 0}
    for start in range(0, len(texts), 4096):
        part = texts[start:start + 4096]
        segments = text_segments(part)
        old, new = pieces(before, segments), pieces(after, segments)
        at = 0
        for text in part:
            o = [p for s in old[at:at + len(text)] for p in s]
            n = [p for s in new[at:at + len(text)] for p in s]
            at += len(text)
            extra_unk = n.count(unk) - o.count(unk)
            report["pieces"] += len(o)
            report["texts_changed"] += o != n
            report["texts_with_new_unk"] += extra_unk > 0
            report["new_unk_pieces"] += max(extra_unk, 0)
    return report
