"""Vocabulary trimming: on the text it was selected from a trimmed model is the same function (same pieces, remapped
ids, same logits); elsewhere the cost is counted; the tokenizer, the table and the MediaPipe vocabulary stay one."""

import numpy as np
import pytest

from tfbertopt.data.pipeline import encode
from tfbertopt.evaluation import predict_logits
from tfbertopt.kernels import UnsupportedModelError
from tfbertopt.models import tiny_classifier
from tfbertopt.vocabulary import select_tokens, trim_vocabulary, vocabulary_coverage

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
LETTERS = [chr(c) for c in range(ord("a"), ord("z") + 1)]
# Whole words, sub-word pieces and every letter with and without "##", as a real WordPiece vocabulary has.
WORDS = (["the", "movie", "film", "good", "bad", "play", "##ing", "##ed", "##s", "un", "##like", "##able", "was",
          "boring", "great", "not"] + LETTERS + ["##" + c for c in LETTERS])
SEEN = [("the movie was good",), ("playing films",), ("unlikeable",), ("the film was not boring",)]


def classifier(family="bert", **kwargs):
    return tiny_classifier(family, vocabulary=WORDS, hidden_dim=16, sequence_length=16, **kwargs)


def logits(model, texts):
    return predict_logits(model, encode(texts, model.preprocessor))


def pieces(model, text):
    tokenizer = model.preprocessor.tokenizer
    vocab = tokenizer.get_vocabulary()
    return [vocab[i] for i in np.asarray(tokenizer(text)).tolist()]


@pytest.mark.parametrize("family, kwargs", [("bert", {}), ("distilbert", {}), ("electra", {"embedding_dim": 8})],
                         ids=["bert", "distilbert", "electra-e8"])
def test_same_function_on_the_selection_text(family, kwargs):
    clf = classifier(family, **kwargs)
    keep = select_tokens(clf, SEEN, characters=False)
    small = trim_vocabulary(clf, keep)
    assert small.backbone.token_embedding.embeddings.shape[0] == len(keep) < len(WORDS)
    np.testing.assert_allclose(logits(small, SEEN), logits(clf, SEEN), atol=1e-5)
    # The same pieces, now at their places in the kept list.
    before, after = encode(SEEN, clf.preprocessor), encode(SEEN, small.preprocessor)
    np.testing.assert_array_equal(np.searchsorted(keep.ids, before["token_ids"]), after["token_ids"])
    np.testing.assert_array_equal(before["padding_mask"], after["padding_mask"])
    assert pieces(small, "unlikeable") == ["un", "##like", "##able"]


def test_factorized_table_is_trimmed_row_for_row():
    from tfbertopt.factorization import factorize_embeddings

    clf = factorize_embeddings(classifier(), dim=4)
    keep = select_tokens(clf, SEEN, characters=False)
    small = trim_vocabulary(clf, keep)
    np.testing.assert_array_equal(np.asarray(small.backbone.token_embedding.embeddings),
                                  np.asarray(clf.backbone.token_embedding.embeddings)[keep.ids])
    np.testing.assert_allclose(logits(small, SEEN), logits(clf, SEEN), atol=1e-5)


def test_unseen_words_split_into_characters_or_become_unk_and_are_counted():
    clf = classifier()
    unseen = [("the bad film",), ("the movie was good",)]
    with_chars = trim_vocabulary(clf, select_tokens(clf, SEEN))
    assert pieces(with_chars, "bad") == ["b", "##a", "##d"]
    assert vocabulary_coverage(clf, with_chars, unseen) == {
        "texts": 2, "texts_changed": 1, "texts_with_new_unk": 0, "pieces": 7, "new_unk_pieces": 0}
    without = trim_vocabulary(clf, select_tokens(clf, SEEN, characters=False))
    assert pieces(without, "bad") == ["[UNK]"]
    assert vocabulary_coverage(clf, without, unseen) == {
        "texts": 2, "texts_changed": 1, "texts_with_new_unk": 1, "pieces": 7, "new_unk_pieces": 1}


def test_budget_keeps_special_tokens_then_characters_then_the_most_frequent():
    clf = classifier()
    texts = [("good good good bad bad movie",)]
    keep = select_tokens(clf, texts, max_tokens=len(SPECIAL) + 2 * len(LETTERS) + 2)
    assert len(keep) == len(SPECIAL) + 2 * len(LETTERS) + 2
    assert set(SPECIAL) <= set(keep.tokens) and {"good", "bad"} <= set(keep.tokens) and "movie" not in keep.tokens
    assert keep.tokens == sorted(keep.tokens, key=WORDS_AND_SPECIAL.index)     # original order
    assert keep.special == 5 and keep.characters == 52 and keep.coverage == pytest.approx(5 / 6)
    assert select_tokens(clf, texts, min_count=2, characters=False).tokens == SPECIAL + ["good", "bad"]


WORDS_AND_SPECIAL = SPECIAL + WORDS


def test_fill_tops_the_budget_up_in_vocabulary_order():
    clf = tiny_classifier("bert", vocabulary=["[unused0]", *WORDS], hidden_dim=16, sequence_length=16)
    keep = select_tokens(clf, [("good bad",)], characters=False, max_tokens=len(SPECIAL) + 4, fill=True)
    assert keep.tokens == SPECIAL + ["the", "movie", "good", "bad"]   # seen, then the first unseen; [unused0] skipped
    assert keep.filled == 2 and keep.summary().endswith("2 more in vocabulary order)")
    with_chars = select_tokens(clf, [("good",)], max_tokens=len(SPECIAL) + 2 * len(LETTERS) + 3, fill=True)
    assert {"good", "the", "movie"} <= set(with_chars.tokens) and len(with_chars) == len(SPECIAL) + 2 * len(LETTERS) + 3
    with pytest.raises(ValueError, match="fill=True fills the vocabulary up to max_tokens; set max_tokens"):
        select_tokens(clf, SEEN, fill=True)


def test_sentence_pairs_count_both_segments():
    clf = classifier()
    keep = select_tokens(clf, [("good", "boring")], characters=False)
    assert keep.tokens == SPECIAL + ["good", "boring"] and keep.texts == 2


@pytest.mark.parametrize("family", ["roberta", "albert", "xlm_roberta", "deberta_v3"])
def test_families_without_wordpiece_are_refused_with_the_reason(family):
    clf = tiny_classifier(family, hidden_dim=16)
    with pytest.raises(UnsupportedModelError, match="needs a WordPiece tokenizer.*(SentencePiece|BPE)"):
        select_tokens(clf, SEEN)
    with pytest.raises(UnsupportedModelError, match="WordPiece"):
        trim_vocabulary(clf, [0, 1, 2])


def test_bad_arguments_are_one_line_errors():
    clf = classifier()
    with pytest.raises(ValueError, match="max_tokens=10 cannot hold the 5 special tokens and 52 single characters"):
        select_tokens(clf, SEEN, max_tokens=10)
    with pytest.raises(ValueError, match="min_count must be an integer >= 1"):
        select_tokens(clf, SEEN, min_count=0)
    with pytest.raises(TypeError, match="texts must be strings or tuples"):
        select_tokens(clf, [3])
    with pytest.raises(ValueError, match=r"lack \['\[UNK\]'\]"):
        trim_vocabulary(clf, [0, 2, 3, 4, 5])
    with pytest.raises(ValueError, match="repeat"):
        trim_vocabulary(clf, [0, 1, 2, 3, 4, 4])
    with pytest.raises(ValueError, match="must lie in 0.."):
        trim_vocabulary(clf, [0, 1, 2, 3, 4, 999])


def test_saved_trimmed_model_and_its_litert_file_with_mediapipe_vocabulary(tmp_path):
    from tfbertopt.export.litert import export_litert
    from tfbertopt.export.metadata import read_metadata, write_metadata
    from tfbertopt.export.verify import verify_litert
    from tfbertopt.saving import load_model

    pytest.importorskip("mediapipe")
    clf = classifier()
    small = trim_vocabulary(clf, select_tokens(clf, SEEN))
    small.save(tmp_path / "small.keras")
    loaded = load_model(tmp_path / "small.keras")
    texts = SEEN + [("the bad film",), ("a great movie",)]
    np.testing.assert_allclose(logits(loaded, texts), logits(small, texts), atol=1e-6)
    assert loaded.preprocessor.tokenizer.get_vocabulary() == small.preprocessor.tokenizer.get_vocabulary()

    exported = export_litert(small, tmp_path / "small.tflite", "float32", 16)
    from tfbertopt.data.glue import Examples
    from tfbertopt.data.tasks import get_task

    dev = Examples(get_task("sst2"), "dev", texts, np.zeros(len(texts), np.int32), "mem")
    assert verify_litert(exported.path, small, dev).passed
    with_md = write_metadata(exported.path, small, ["negative", "positive"], tmp_path / "small_mp.tflite")
    assert read_metadata(with_md.path)["vocabulary"] == small.preprocessor.tokenizer.get_vocabulary()


def test_a_trimmed_student_is_refused_by_a_live_teacher_so_trim_after_distilling():
    from tfbertopt.distillation import DistillationConfig, Distiller

    clf = classifier()
    small = trim_vocabulary(clf, select_tokens(clf, SEEN))
    with pytest.raises(ValueError, match="use different tokenizers"):
        Distiller(small, clf, DistillationConfig())
