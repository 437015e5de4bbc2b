"""encode: single sentences and sentence pairs reach the model as the preprocessor packs them."""

import numpy as np

from tfbertopt.data.pipeline import encode, lengths
from tfbertopt.models import tiny_bert_classifier


def test_sentence_pairs_encode_both_segments():
    """A pair is [CLS] a [SEP] b [SEP] with segment ids 0...0 1...1. (Passing the two columns to keras-hub's
    preprocessor positionally made it take the second as labels: only the first sentence was encoded.)"""
    clf = tiny_bert_classifier(["the", "cat", "sat", "dog"], sequence_length=16)
    vocab = clf.preprocessor.tokenizer
    f = encode([("the cat", "the dog sat"), ("cat", "dog")], clf.preprocessor)
    cls, sep = vocab.token_to_id("[CLS]"), vocab.token_to_id("[SEP]")
    ids = lambda text: [int(i) for i in np.asarray(vocab(text)).reshape(-1)]  # noqa: E731
    first = [cls, *ids("the cat"), sep]
    second = [*ids("the dog sat"), sep]
    assert f["token_ids"][0, :len(first) + len(second)].tolist() == first + second
    assert f["segment_ids"][0, :len(first) + len(second)].tolist() == [0] * len(first) + [1] * len(second)
    assert lengths(f).tolist() == [len(first) + len(second), 5]
    assert f["segment_ids"][1, :5].tolist() == [0, 0, 0, 1, 1]


def test_single_sentences_have_one_segment():
    clf = tiny_bert_classifier(["the", "cat", "sat"], sequence_length=8)
    f = encode(["the cat sat", "cat"], clf.preprocessor)
    assert not np.any(f["segment_ids"]) and lengths(f).tolist() == [5, 3]
