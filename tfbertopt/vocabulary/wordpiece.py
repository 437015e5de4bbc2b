"""The WordPiece tokenizer of a classifier, and text as the tokenizer sees it: segments and pieces."""

from __future__ import annotations

from collections.abc import Iterable

import keras_hub
import numpy as np

from tfbertopt.kernels import UnsupportedModelError


def wordpiece_tokenizer(model):
    """The WordPiece tokenizer of a classifier (or a tokenizer itself), or UnsupportedModelError saying why not."""
    preprocessor = getattr(model, "preprocessor", None)
    tokenizer = getattr(preprocessor, "tokenizer", None) if preprocessor is not None else model
    if isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer):
        return tokenizer
    if tokenizer is None or not hasattr(tokenizer, "get_vocabulary"):
        raise UnsupportedModelError(f"{type(model).__name__} has no tokenizer: vocabulary trimming edits the "
                                    f"tokenizer together with the token table, so the model needs its preprocessor")
    kind = ("a SentencePiece model" if isinstance(tokenizer, keras_hub.tokenizers.SentencePieceTokenizer)
            else "byte-level BPE merges" if isinstance(tokenizer, keras_hub.tokenizers.BytePairTokenizer)
            else "no WordPiece vocabulary")
    raise UnsupportedModelError(
        f"vocabulary trimming needs a WordPiece tokenizer (BERT, MiniLM, ELECTRA, DistilBERT); "
        f"{type(tokenizer).__name__} splits words with {kind}, whose pieces and ids are defined by that model, so "
        f"removing rows from the table would not remove them from how text splits")


def required_tokens(tokenizer) -> list[str]:
    """The pieces a WordPiece tokenizer cannot work without: its special tokens and its out-of-vocabulary token."""
    return list(dict.fromkeys((*tokenizer.special_tokens, tokenizer.oov_token)))


def text_segments(texts: Iterable) -> list[str]:
    """Every segment of `texts` (strings, or 1- and 2-segment tuples as GLUE `Examples.texts` holds), in order."""
    out = []
    for text in texts:
        if isinstance(text, str):
            out.append(text)
        elif isinstance(text, (tuple, list)) and all(isinstance(s, str) for s in text):
            out.extend(text)
        else:
            raise TypeError(f"texts must be strings or tuples of strings (sentence pairs), got {text!r}")
    return out


def pieces(tokenizer, segments: list[str]) -> list[list[str]]:
    """The pieces (strings) `tokenizer` splits each of `segments` into."""
    import tensorflow as tf

    vocab = np.array([str(t) for t in tokenizer.get_vocabulary()], dtype=object)
    return [list(vocab[np.asarray(row, np.int64)]) for row in tokenizer(tf.constant(segments))]
