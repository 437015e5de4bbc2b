"""A small synthetic SST-2-style dataset, made here, for the offline demo and the tests.

It is a DEMO: sentences are built from word lists (a sentiment word, negations flip it), so a tiny BERT learns
it in a minute. Results on it say nothing about real accuracy; benchmarks use real GLUE data.

Example:

>>> from tfbertopt.data.demo import demo_examples, demo_vocabulary
>>> train = demo_examples("train", 100)
>>> len(train), train.task.name
(100, 'sst2')
>>> "great" in demo_vocabulary()
True
"""

from __future__ import annotations

import numpy as np

from tfbertopt.data.glue import Examples
from tfbertopt.data.tasks import get_task

POSITIVE = ["great", "wonderful", "moving", "funny", "brilliant", "charming", "smart", "beautiful"]
NEGATIVE = ["dull", "boring", "awful", "clumsy", "tedious", "bland", "messy", "lifeless"]
SUBJECTS = ["the movie", "this film", "the story", "the acting", "the script", "the ending", "its cast"]
VERBS = ["is", "was", "feels", "seems"]
FILLER = ["really", "quite", "very", "often", "mostly", "truly"]
NEGATION = "not"


def demo_vocabulary() -> list[str]:
    words = set(POSITIVE + NEGATIVE + VERBS + FILLER + [NEGATION])
    for s in SUBJECTS:
        words.update(s.split())
    return sorted(words)


def demo_examples(split: str = "train", n: int = 512, seed: int | None = None) -> Examples:
    """`n` labelled sentences (label 1 = positive); train and dev draw from different seeds."""
    rng = np.random.default_rng(seed if seed is not None else {"train": 0, "dev": 1}.get(split, 2))
    texts, labels = [], []
    for _ in range(n):
        positive = bool(rng.integers(2))
        negated = rng.random() < 0.25
        word = rng.choice(POSITIVE if positive != negated else NEGATIVE)
        parts = [rng.choice(SUBJECTS), rng.choice(VERBS)]
        if negated:
            parts.append(NEGATION)
        if rng.random() < 0.5:
            parts.append(rng.choice(FILLER))
        parts.append(str(word))
        texts.append((" ".join(parts),))
        labels.append(int(positive))
    return Examples(task=get_task("sst2"), split=split, texts=texts, labels=np.array(labels, np.int32),
                    source="demo (synthetic)", bad_rows=[])
