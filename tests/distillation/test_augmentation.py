"""TinyBERT-style augmentation: whole-word pieces of every tokenizer kind, neighbours by the token table, the copies
and their teacher labels, and the distill stage's `augment` option."""

import json
import re

import numpy as np
import pytest

from tfbertopt.data.demo import demo_examples, demo_vocabulary
from tfbertopt.data.pipeline import encode
from tfbertopt.distillation.augmentation import (augment_examples, augment_texts, embedding_neighbours, text_words,
                                                 word_pieces)
from tfbertopt.evaluation import predict_logits
from tfbertopt.models import TINY_FAMILIES, tiny_bert_classifier, tiny_classifier
from tfbertopt.recipe import RecipeError, load_recipe, parse_recipe
from tfbertopt.runner import run_recipe

pytestmark = pytest.mark.filterwarnings("ignore:Your input ran out of data")

WORDS = ["great", "brilliant", "dull", "movie", "film", "the", "is"]


def _set_rows(model, rows: dict):
    """Overwrites token-table rows by word (whole-word pieces only)."""
    words, ids = word_pieces(model)
    layer = model.backbone.token_embedding
    table = np.asarray(layer.embeddings).copy()
    for word, vector in rows.items():
        table[ids[words.index(word)]] = vector
    layer.embeddings.assign(table)


@pytest.mark.parametrize("family", TINY_FAMILIES)
def test_word_pieces_are_the_whole_words_of_every_tokenizer_kind(family):
    model = tiny_classifier(family, vocabulary=WORDS)
    words, ids = word_pieces(model)
    assert len(set(WORDS) & set(words)) >= 6, f"{family}: {words}"    # tiny SentencePiece models may miss one
    assert all(w.isalpha() and len(w) >= 2 for w in words)
    vocab = [str(t) for t in model.preprocessor.tokenizer.get_vocabulary()]
    assert all(vocab[i].endswith(w) for w, i in zip(words, ids))
    near = embedding_neighbours(model, ["great"], k=2)
    assert len(near["great"]) == 2 and "great" not in near["great"]


def test_word_pieces_skip_continuations_specials_and_single_letters():
    model = tiny_bert_classifier(["great", "##ly", "a", "1990", "x2"])
    assert word_pieces(model)[0] == ["great"]


def test_neighbours_are_ranked_by_cosine_of_the_token_rows():
    model = tiny_bert_classifier(WORDS)
    dim = model.backbone.token_embedding.embeddings.shape[1]
    base = np.random.default_rng(0).normal(size=(3, dim))
    _set_rows(model, {"great": base[0], "brilliant": 3.0 * base[0] + 0.01 * base[1], "dull": -base[0],
                      "movie": base[2], "film": base[2] + 0.5 * base[1]})
    near = embedding_neighbours(model, ["great", "movie", "unknownword"], k=6)
    assert set(near) == {"great", "movie"}                     # only words that are whole-word pieces
    assert near["great"][0] == "brilliant" and near["great"][-1] == "dull"
    assert near["movie"][0] == "film"
    with pytest.raises(ValueError, match="k must be at least 1"):
        embedding_neighbours(model, ["great"], k=0)


def test_augment_texts_replaces_words_by_neighbours_only():
    neighbours = {"great": ["brilliant", "fine"], "movie": ["film"]}
    texts = [("a great movie , 10 / 10 !",), ("the great movie", "is great")]
    none, _ = augment_texts(texts, neighbours, copies=3, probability=0.0)
    assert none == []                                           # unchanged copies are left out
    out, source = augment_texts(texts, neighbours, copies=1, probability=1.0, seed=3)
    assert source == [0, 1] and out[0][0].endswith("film , 10 / 10 !") and out[0][0].startswith("a ")
    assert isinstance(out[1], tuple) and len(out[1]) == 2 and out[1][0].split()[-1] == "film"
    assert {out[0][0].split()[1], out[1][1].split()[-1]} <= {"brilliant", "fine"}
    again, _ = augment_texts(texts, neighbours, copies=4, probability=0.5, seed=7)
    assert again == augment_texts(texts, neighbours, copies=4, probability=0.5, seed=7)[0]
    assert len(set(again)) == len(again)                        # no copy twice
    assert text_words([("Great movie!", "a 10")]) == {"great", "movie"}
    for bad, message in [({"copies": -1}, "copies must be 0 or more"), ({"probability": 1.5}, "in \\[0, 1\\]")]:
        with pytest.raises(ValueError, match=message):
            augment_texts(texts, neighbours, **bad)


def test_augment_examples_labels_copies_by_the_teacher_and_keeps_gold_labels():
    teacher = tiny_bert_classifier(demo_vocabulary())
    train = demo_examples("train", 24)
    train.labels[:] = 1 - train.labels                         # gold labels the teacher would not give
    more = augment_examples(teacher, train, copies=2, probability=0.5, seed=0)
    n = len(train)
    assert len(more) > n and more.texts[:n] == train.texts and np.array_equal(more.labels[:n], train.labels)
    logits = predict_logits(teacher, encode(more.texts[n:], teacher.preprocessor))
    assert np.array_equal(more.labels[n:], logits.argmax(-1)) and more.labels.dtype == train.labels.dtype
    assert "augmented copies" in more.source


@pytest.mark.parametrize("augment, message", [
    ({"copise": 2}, "augment: unknown key 'copise' (did you mean 'copies'?)"),
    ({"copies": 1.5}, "augment.copies: expected an integer at least 0"),
    ({"probability": 2}, "augment.probability: expected a number between 0.0 and 1.0, got 2"),
    ({"neighbours": True}, "augment.neighbours: expected an integer at least 1"),
])
def test_bad_augment_options(augment, message):
    raw = {"name": "t", "model": "demo", "task": "sst2", "data": {"source": "demo"},
           "stages": [{"distill": {"augment": augment}}]}
    with pytest.raises(RecipeError) as info:
        parse_recipe(raw)
    assert message in str(info.value)


def test_distill_stage_trains_and_caches_over_the_augmented_copies(tmp_path, capsys, stub_int8_peak):
    import yaml

    recipe = {"name": "t", "model": "demo", "task": "sst2", "sequence_length": 16,
              "data": {"source": "demo", "demo_train_examples": 64},
              "stages": [{"distill": {"student": [0], "augment": {"copies": 2, "probability": 0.5},
                                      "epochs": 1, "max_steps": 2, "batch_size": 32, "cache": True}}]}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    run_recipe(load_recipe(str(path)), str(tmp_path / "out"))
    printed = capsys.readouterr().out
    found = re.search(r"distill: (\d+) augmented copies of 64 training examples", printed)
    assert found and 0 < int(found.group(1)) <= 128, printed
    total = 64 + int(found.group(1))
    assert f"teacher cache: {total} examples" in printed
    logits = np.load(tmp_path / "out" / "00_distill" / "teacher_cache" / "logits.npy")
    assert logits.shape[0] == total
    state = json.loads((tmp_path / "out" / "state.json").read_text())["finished"]["00_distill"]
    assert state["tags"] == ["distill", "logits-kd", "augment"]
