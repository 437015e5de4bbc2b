"""Vocabulary trimming: keep only the WordPieces a deployment needs, in the embedding table, the tokenizer and the
MediaPipe metadata together.

- `selection`: which tokens to keep (`select_tokens`): those the task's text uses, a user corpus or word list, the
  special tokens and single characters, within a size budget.
- `wordpiece`: the model's WordPiece tokenizer (`wordpiece_tokenizer`, which names why other tokenizers cannot be
  trimmed) and text as it sees it.
- `trim`: the surgery (`trim_vocabulary`): a classifier whose token table holds only the kept rows and whose
  tokenizer holds only the kept pieces, in their original order; `coverage` counts what the trimmed tokenizer
  splits differently on other text (`vocabulary_coverage`).

Example:

>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.vocabulary import select_tokens, trim_vocabulary
>>> clf = tiny_bert_classifier(["good", "bad", "film", "movie", "boring", "fun"], hidden_dim=16)
>>> keep = select_tokens(clf, [("a good film",), ("a boring movie",)], characters=False)
>>> small = trim_vocabulary(clf, keep)
>>> small.preprocessor.tokenizer.get_vocabulary()
['[PAD]', '[UNK]', '[CLS]', '[SEP]', '[MASK]', 'good', 'film', 'movie', 'boring']
"""

from tfbertopt.vocabulary.selection import TokenSelection, select_tokens, token_counts
from tfbertopt.vocabulary.trim import trim_vocabulary, vocabulary_coverage
from tfbertopt.vocabulary.wordpiece import wordpiece_tokenizer

__all__ = ["TokenSelection", "select_tokens", "token_counts", "trim_vocabulary", "vocabulary_coverage",
           "wordpiece_tokenizer"]
