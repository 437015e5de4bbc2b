import pytest


@pytest.fixture()
def bert4():
    from tfbertopt.data.demo import demo_vocabulary
    from tfbertopt.models import tiny_bert_classifier

    return tiny_bert_classifier(demo_vocabulary(), num_layers=4, hidden_dim=32, num_heads=4, intermediate_dim=64,
                                sequence_length=16, seed=3)


@pytest.fixture()
def features(bert4, demo_data):
    from tfbertopt.data.pipeline import encode

    return encode(demo_data[1].texts[:32], bert4.preprocessor)
