"""Shared fixtures: a tiny BERT classifier and the synthetic demo data (no network, no ../shared)."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def demo_data():
    from tfbertopt.data.demo import demo_examples

    return demo_examples("train", 256), demo_examples("dev", 64)


@pytest.fixture()
def tiny_classifier():
    """A fresh 2-layer H32 BertTextClassifier over the demo vocabulary, sequence length 16."""
    from tfbertopt.data.demo import demo_vocabulary
    from tfbertopt.models import tiny_bert_classifier

    return tiny_bert_classifier(demo_vocabulary(), num_layers=2, hidden_dim=32, num_heads=2, intermediate_dim=64,
                                sequence_length=16)
