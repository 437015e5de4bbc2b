"""Which WordPieces a trimmed vocabulary keeps.

`select_tokens(model, texts)` counts the pieces the model's own tokenizer produces on `texts` (a task's training
text, a user corpus, a word-frequency list: any iterable of strings or of 1- and 2-segment tuples) and keeps, in this
order of priority:

1. the tokens the tokenizer needs (`[PAD]`, `[UNK]`, `[CLS]`, `[SEP]`, `[MASK]` for BERT's), always;
2. with `characters=True`, every single-character piece (`a` and `##a`), so that any word made of known characters
   still splits into pieces instead of becoming `[UNK]`;
3. the pieces seen at least `min_count` times, most frequent first, up to `max_tokens` in all;
4. with `fill=True`, unseen pieces in vocabulary order until `max_tokens` is reached, skipping reserved tokens
   (`[unused0]`, ...): BERT's WordPiece vocabulary (and so MiniLM's, DistilBERT's and ELECTRA's) lists its pieces
   after the special tokens and characters by pre-training frequency (`the`, `of`, `and`, ...), so id order is a
   general word-frequency list that ships with the model, and words a task's text never used still split as before
   when they are common.

Every piece of a word the trimmed tokenizer saw is kept, so WordPiece's greedy longest-match splits that word
exactly as before (the longest matching piece is still there, and no longer one can appear): on the text it was
selected from, a trimmed model gives the same token ids, remapped, and the same logits.

Example:

>>> from tfbertopt.models import tiny_bert_classifier
>>> clf = tiny_bert_classifier(["good", "bad", "film", "movie"], hidden_dim=16)
>>> keep = select_tokens(clf, ["good film", "good movie"], characters=False)
>>> keep.tokens
['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'good', 'film', 'movie']
>>> keep.summary()
'8 of 9 tokens kept (5 special, 0 characters, 3 seen in 2 texts: 100.0% of their 4 pieces)'
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Iterable

import numpy as np

from tfbertopt.vocabulary.wordpiece import required_tokens, text_segments, wordpiece_tokenizer


@dataclasses.dataclass(frozen=True)
class TokenSelection:
    """The kept pieces of a vocabulary: `ids` (ascending original ids) and `tokens`, with the counts they were chosen
    by (`counts[i]`: times original id i was seen) and how many of each kind were kept."""

    ids: np.ndarray
    tokens: list[str]
    counts: np.ndarray
    vocabulary_size: int
    special: int
    characters: int
    texts: int
    filled: int = 0

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def coverage(self) -> float:
        """Share of the counted pieces (over all selection texts) that the kept vocabulary holds."""
        total = int(self.counts.sum())
        return float(self.counts[self.ids].sum() / total) if total else 1.0

    def summary(self) -> str:
        seen = len(self) - self.special - self.characters - self.filled
        filled = f", {self.filled} more in vocabulary order" if self.filled else ""
        return (f"{len(self)} of {self.vocabulary_size} tokens kept ({self.special} special, {self.characters} "
                f"characters, {seen} seen in {self.texts} texts: {self.coverage:.1%} of their "
                f"{int(self.counts.sum())} pieces{filled})")


def token_counts(tokenizer, texts: Iterable, batch_size: int = 4096) -> tuple[np.ndarray, int]:
    """How often `tokenizer` produces each id on `texts` (strings or segment tuples), and how many texts there were."""
    import tensorflow as tf

    segments = text_segments(texts)
    counts = np.zeros(tokenizer.vocabulary_size(), np.int64)
    for start in range(0, len(segments), batch_size):
        rows = tokenizer(tf.constant(segments[start:start + batch_size]))    # one list of ids per segment
        flat = np.fromiter(itertools.chain.from_iterable(rows), np.int64)
        counts += np.bincount(flat, minlength=len(counts))[:len(counts)]
    return counts, len(segments)


def _is_reserved(token: str) -> bool:
    """A bracketed placeholder such as BERT's `[unused0]` (never produced by the tokenizer from text)."""
    return len(token) > 2 and token.startswith("[") and token.endswith("]")


def _is_character(token: str, suffix: str) -> bool:
    return len(token) == 1 or (token.startswith(suffix) and len(token) == len(suffix) + 1)


def select_tokens(model, texts: Iterable = (), *, min_count: int = 1, max_tokens: int | None = None,
                  characters: bool = True, fill: bool = False) -> TokenSelection:
    """The pieces of `model`'s WordPiece vocabulary to keep for `texts` (see the module docstring).

    Raises:
      UnsupportedModelError: the model's tokenizer is not WordPiece (`wordpiece_tokenizer` says why).
      ValueError: `min_count` < 1, a `max_tokens` too small for the special tokens and characters, or `fill`
        without `max_tokens`.
    """
    tokenizer = wordpiece_tokenizer(model)
    if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 1:
        raise ValueError(f"min_count must be an integer >= 1, got {min_count!r}")
    if fill and max_tokens is None:
        raise ValueError("fill=True fills the vocabulary up to max_tokens; set max_tokens")
    vocab = [str(t) for t in tokenizer.get_vocabulary()]
    counts, n_texts = token_counts(tokenizer, texts)
    suffix = tokenizer.suffix_indicator
    needed = set(required_tokens(tokenizer))
    special = [i for i, t in enumerate(vocab) if t in needed]
    chars = [i for i, t in enumerate(vocab) if characters and i not in special and _is_character(t, suffix)]
    required = set(special) | set(chars)
    if max_tokens is not None and max_tokens < len(required):
        raise ValueError(f"max_tokens={max_tokens} cannot hold the {len(special)} special tokens and {len(chars)} "
                         f"single characters; raise it, or pass characters=False")
    order = np.lexsort((np.arange(len(vocab)), -counts))      # most frequent first, then by id
    seen = [int(i) for i in order if counts[i] >= min_count and int(i) not in required]
    if max_tokens is not None:
        seen = seen[:max_tokens - len(required)]
    kept = required | set(seen)
    unseen = (i for i, t in enumerate(vocab) if i not in kept and not _is_reserved(t))
    filled = set(itertools.islice(unseen, max_tokens - len(kept))) if fill else set()
    ids = np.array(sorted(kept | filled), np.int64)
    return TokenSelection(ids, [vocab[i] for i in ids], counts, len(vocab), len(special), len(chars), n_texts,
                          len(filled))
