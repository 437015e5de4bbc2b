"""`.keras` files saved by tfbertopt 0.1 (PrunedBertBackbone, PrunedRobertaBackbone) load with the same logits,
and every method takes them as input."""

from pathlib import Path

import keras
import numpy as np
import pytest

from tfbertopt.layers import CompressedBackbone, PrunedBertBackbone, PrunedRobertaBackbone
from tfbertopt.pruning.structured import full_plan, shrink
from tfbertopt.surgery import as_compressed

LEGACY = Path(__file__).parent.parent / "fixtures" / "legacy"
CASES = ["bert_shrunk_embedding", "bert_low_rank", "bert_shared", "bert_qat", "distilbert_shrunk"]


@pytest.fixture(scope="module")
def expected():
    return dict(np.load(LEGACY / "expected.npz"))


def _inputs(expected, model):
    names = set(model.backbone.input)
    return {k[2:]: v for k, v in expected.items() if k.startswith("x_") and k[2:] in names}


@pytest.mark.parametrize("name", CASES)
def test_legacy_file_loads_with_the_same_logits(name, expected):
    model = keras.saving.load_model(LEGACY / f"{name}.keras")
    legacy_class = PrunedRobertaBackbone if name.startswith("distilbert") else PrunedBertBackbone
    assert type(model.backbone) is legacy_class
    logits = model.predict(_inputs(expected, model), verbose=0)
    np.testing.assert_allclose(logits, expected[f"logits_{name}"], atol=1e-5)


def test_legacy_models_convert_to_the_compressed_backbone(expected):
    distil = keras.saving.load_model(LEGACY / "distilbert_shrunk.keras")
    copy = as_compressed(distil)
    assert type(copy.backbone) is CompressedBackbone and type(copy).__name__ == "DistilBertTextClassifier"
    x = _inputs(expected, distil)
    np.testing.assert_allclose(copy.predict(x, verbose=0), expected["logits_distilbert_shrunk"], atol=1e-5)
    bert = keras.saving.load_model(LEGACY / "bert_shrunk_embedding.keras")
    same = shrink(bert, full_plan(bert))          # a legacy PrunedBertBackbone is already compressed
    np.testing.assert_allclose(same.predict(_inputs(expected, bert), verbose=0),
                               expected["logits_bert_shrunk_embedding"], atol=1e-5)
