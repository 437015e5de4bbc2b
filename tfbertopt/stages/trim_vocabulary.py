"""The `trim_vocabulary` stage: keeps only the WordPieces the task's text (and an optional corpus) uses."""

from __future__ import annotations

import os
from typing import ClassVar

from tfbertopt.evaluation import evaluate
from tfbertopt.stages.base import RecipeError, Stage, resolve_path, say
from tfbertopt.vocabulary import select_tokens, trim_vocabulary, vocabulary_coverage


def read_corpus(path: str) -> list[str]:
    """One text per non-empty line of a UTF-8 file (a user corpus or a word-frequency list)."""
    with open(path, encoding="utf-8") as f:
        return [line.strip() for line in f if line.strip()]


class TrimVocabularyStage(Stage):
    """Trims the vocabulary to the WordPieces of the training text (and `corpus`, a text file), with the special
    tokens and single characters, within `max_tokens`: token table, tokenizer and the exported file's MediaPipe
    vocabulary together (`tfbertopt.vocabulary`). Reports, on the dev set, how many sentences now split differently,
    how many pieces became [UNK], and the dev metrics before and after the trim (what it costs). WordPiece families
    only (BERT, MiniLM, ELECTRA, DistilBERT)."""

    name = "trim_vocabulary"
    options: ClassVar[dict] = {
        "train_text": (True, bool, "count the pieces of the task's training text"),
        "corpus": (None, str, "a UTF-8 text file, one text per line, whose pieces are kept too (a user corpus or a "
                              "word-frequency list)"),
        "min_count": (1, int, "keep pieces seen at least this often"),
        "max_tokens": (None, int, "size budget: at most this many pieces in all (the most frequent are kept)"),
        "characters": (True, bool, "keep every single-character piece, so unseen words split instead of "
                                   "becoming [UNK]"),
        "fill": (False, bool, "fill the rest of max_tokens with unseen pieces in vocabulary order (BERT's WordPiece "
                              "vocabulary lists them by pre-training frequency: a general word-frequency list)"),
    }
    counts = ("min_count", "max_tokens")
    trains = True    # it makes and saves a new model (without training it), so it comes before export

    def check(self, path: str, options: dict) -> None:
        if not options["train_text"] and options["corpus"] is None and not options["fill"]:
            raise RecipeError(f"{path}: nothing to select the vocabulary from; set train_text: true, a corpus or fill")
        if options["fill"] and options["max_tokens"] is None:
            raise RecipeError(f"{path}.fill: fills the vocabulary up to max_tokens; set max_tokens")

    def tags(self, options: dict) -> list[str]:
        return ["vocab-trim"]

    def run(self, run, options: dict, stage_dir: str, train, dev, index: int) -> dict:
        texts = list(train.texts) if options["train_text"] else []
        corpus = resolve_path(run.recipe, options["corpus"])
        if corpus is not None:
            if not os.path.isfile(corpus):
                raise RecipeError(f"stages[{index}].trim_vocabulary.corpus: no such file: {corpus}")
            texts += read_corpus(corpus)
        keep = select_tokens(run.model, texts, min_count=options["min_count"], max_tokens=options["max_tokens"],
                             characters=options["characters"], fill=options["fill"])
        say(f"trim_vocabulary: {keep.summary()}")
        trimmed = trim_vocabulary(run.model, keep)
        coverage = vocabulary_coverage(run.model, trimmed, dev.texts)
        say(f"trim_vocabulary: on dev, {coverage['texts_changed']} of {coverage['texts']} examples split "
            f"differently, {coverage['texts_with_new_unk']} gained [UNK] ({coverage['new_unk_pieces']} pieces)")
        before, after = evaluate(run.model, dev), evaluate(trimmed, dev)
        say("trim_vocabulary: dev " + ", ".join(f"{k} {before[k]:.4f} -> {after[k]:.4f}" for k in before))
        run.model = trimmed
        return self.save_model(run, stage_dir, {"kept": len(keep), "vocabulary_size": keep.vocabulary_size,
                                                "coverage": coverage, "dev_before": before, "dev_after": after,
                                                "tags": self.tags(options)})
