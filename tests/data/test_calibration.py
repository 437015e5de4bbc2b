"""Calibration sets for int8/16x8 LiteRT export: the signature's names, dtypes and shapes, and clear errors."""

import numpy as np
import pytest

from tfbertopt.data.glue import Examples, get_task
from tfbertopt.data.pipeline import encode
from tfbertopt.data.calibration import calibration_features, representative_dataset

NAMES = ("token_ids", "padding_mask", "segment_ids")


@pytest.fixture()
def features(tiny_classifier, demo_data):
    train, _ = demo_data
    return encode(train.texts[:20], tiny_classifier.preprocessor)


def test_examples_are_encoded_sampled_and_padded(tiny_classifier, demo_data):
    train, _ = demo_data
    out = calibration_features(train, tiny_classifier, NAMES, sequence_length=24, steps=10)
    assert set(out) == set(NAMES)
    assert all(v.shape == (10, 24) and v.dtype == np.int32 for v in out.values())
    assert (out["token_ids"][:, 16:] == 0).all()  # the preprocessor's 16, padded with 0 to the export's 24
    again = calibration_features(train, tiny_classifier, NAMES, sequence_length=24, steps=10)
    np.testing.assert_array_equal(out["token_ids"], again["token_ids"])  # seeded sample


def test_representative_dataset_yields_signature_dicts(tiny_classifier, features):
    out = calibration_features(features, tiny_classifier, NAMES, sequence_length=16, steps=100)
    samples = list(representative_dataset(out, NAMES, sequence_length=16)())
    assert len(samples) == 20
    for sample in samples:
        assert set(sample) == set(NAMES)
        assert all(v.shape == (1, 16) and v.dtype == np.int32 for v in sample.values())


def test_dynamic_length_trims_each_example_to_its_tokens(tiny_classifier, features):
    out = calibration_features(features, tiny_classifier, NAMES, sequence_length=None)
    samples = list(representative_dataset(out, NAMES)())
    widths = [s["token_ids"].shape[1] for s in samples]
    assert widths == [int(m.sum()) for m in features["padding_mask"]]


def test_longer_features_are_cut_to_the_export_length(tiny_classifier, features):
    out = calibration_features(features, tiny_classifier, NAMES, sequence_length=8)
    assert out["token_ids"].shape == (20, 8)


@pytest.mark.parametrize("mutate, message", [
    (lambda f: {k: v for k, v in f.items() if k != "padding_mask"}, r"lacks the model input\(s\) \['padding_mask'\]"),
    (lambda f: {**f, "token_ids": f["token_ids"].astype(np.float32)}, "'token_ids' has dtype float32"),
    (lambda f: {**f, "segment_ids": f["segment_ids"][:, :, None]}, r"'segment_ids' has shape \(20, 16, 1\)"),
    (lambda f: {**f, "padding_mask": f["padding_mask"][:5]}, "disagree on the number of examples"),
    (lambda f: {**f, "padding_mask": f["padding_mask"][:, :10]}, "disagree on the sequence length"),
    (lambda f: {k: v[:0] for k, v in f.items()}, "calibration set is empty"),
    (lambda f: {**f, "token_ids": f["token_ids"] + 10_000}, "outside the model's vocabulary"),
    (lambda f: {**f, "padding_mask": f["padding_mask"] * 2}, "padding_mask must hold only 0 and 1"),
    (lambda f: {**f, "padding_mask": np.zeros_like(f["padding_mask"])}, "no real token"),
    (lambda f: [f], "must be a feature dict .* or GLUE Examples, got list"),
])
def test_bad_calibration_sets_are_named(tiny_classifier, features, mutate, message):
    with pytest.raises(ValueError, match=message):
        calibration_features(mutate(features), tiny_classifier, NAMES, sequence_length=16)


def test_empty_examples_and_missing_preprocessor(tiny_classifier, demo_data):
    empty = Examples(get_task("sst2"), "train", [], np.zeros((0,), np.int32), "mem")
    with pytest.raises(ValueError, match="calibration set is empty"):
        calibration_features(empty, tiny_classifier, NAMES, 16)
    with pytest.raises(ValueError, match="no calibration set"):
        calibration_features(None, tiny_classifier, NAMES, 16)
    with pytest.raises(ValueError, match="calibration_steps must be a positive"):
        calibration_features(demo_data[0], tiny_classifier, NAMES, 16, steps=0)
    tiny_classifier.preprocessor = None
    with pytest.raises(ValueError, match="model has no preprocessor"):
        calibration_features(demo_data[0], tiny_classifier, NAMES, 16)
