"""Property tests for calibration-set validation: any malformed feature dict raises a ValueError naming the problem
(never a numpy/TensorFlow error, never silently wrapped or out-of-range token data); any accepted one is exactly
what the converter needs (int32, (n, length), ids inside the vocabulary, a 0/1 mask with a real token per row)."""

import functools

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from helpers.profiles import examples  # pytest puts tests/ on sys.path

from tfbertopt.data.calibration import calibration_features

NAMES = ("token_ids", "padding_mask", "segment_ids")
EXAMPLES = 120   # max_examples of each property below (counted in the report of issue 8)


@functools.lru_cache(maxsize=1)
def model():
    from tfbertopt.data.demo import demo_vocabulary
    from tfbertopt.models import tiny_bert_classifier

    return tiny_bert_classifier(demo_vocabulary(), num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32,
                                sequence_length=16)


@functools.lru_cache(maxsize=1)
def vocabulary_size():
    """The tiny model's vocabulary size, known without building it (strategies must not touch global RNGs)."""
    from tfbertopt.data.demo import demo_vocabulary

    return len(dict.fromkeys(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + list(demo_vocabulary())))


def test_vocabulary_size_is_the_models():
    assert vocabulary_size() == int(model().backbone.vocabulary_size)


DTYPES = st.sampled_from([np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint32, np.uint64, np.bool_,
                          np.float16, np.float32, np.float64, np.complex64])


@st.composite
def array_value(draw, n, width):
    """A value for one input: mostly a plausible (n, width) array, sometimes of another rank, dtype or kind."""
    kind = draw(st.sampled_from(["good", "good", "good", "shape", "dtype", "huge", "negative", "other"]))
    if kind == "other":
        return draw(st.sampled_from([None, "token_ids", 3, 2.5, [[1, 2], [3]], [], {"a": 1}, b"\x00",
                                     np.array(["a", "b"]), np.array([[object()]])]))
    shape = (n, width)
    if kind == "shape":
        shape = draw(hnp.array_shapes(min_dims=0, max_dims=4, min_side=0, max_side=5))
    dtype = draw(DTYPES) if kind == "dtype" else draw(st.sampled_from([np.int32, np.int64]))
    if kind == "huge":
        dtype = np.int64
        elements = st.sampled_from([2 ** 31, 2 ** 32 + 1, 2 ** 32 + 5, -(2 ** 32) + 1, 2 ** 40])
    elif kind == "negative":
        elements = st.integers(-5, -1)
    elif np.dtype(dtype).kind == "b":
        elements = st.booleans()
    elif np.dtype(dtype).kind in "iu":
        info = np.iinfo(dtype)
        elements = st.integers(max(info.min, -3), min(info.max, vocabulary_size() + 3))
    else:
        elements = None
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def feature_dicts(draw):
    n, width = draw(st.integers(0, 4)), draw(st.integers(0, 6))
    keys = draw(st.lists(st.sampled_from(NAMES + ("labels", "attention_mask")), unique=True, max_size=5))
    return {key: draw(array_value(n, width)) for key in keys}


def _check_accepted(out, length):
    assert set(out) == set(NAMES)
    n = len(out["token_ids"])
    for name, value in out.items():
        assert value.dtype == np.int32 and value.ndim == 2 and len(value) == n > 0, name
        if length:
            assert value.shape[1] == length
    assert out["token_ids"].min() >= 0 and out["token_ids"].max() < vocabulary_size()
    assert np.isin(out["padding_mask"], (0, 1)).all() and out["padding_mask"].any(axis=1).all()
    assert out["segment_ids"].min() >= 0 and out["segment_ids"].max() < model().backbone.num_segments


@settings(max_examples=examples(EXAMPLES), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(features=feature_dicts(), length=st.sampled_from([None, 4, 16]), steps=st.integers(1, 5))
def test_malformed_feature_dicts_raise_value_error_or_are_valid(features, length, steps):
    try:
        out = calibration_features(features, model(), NAMES, sequence_length=length, steps=steps)
    except ValueError as err:
        assert type(err) is ValueError and "calibration" in str(err), repr(err)
        event("ValueError")
        return
    event("accepted")
    _check_accepted(out, length)


@settings(max_examples=examples(EXAMPLES), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(n=st.integers(1, 5), width=st.integers(1, 6), data=st.data(),
       broken=st.sampled_from(["token_ids", "padding_mask", "segment_ids"]),
       value=st.sampled_from([-1, -(2 ** 32) + 1, 2 ** 32, 2 ** 32 + 1, 2 ** 40, "vocab", 2, 7]))
def test_out_of_range_integers_are_refused_not_wrapped(n, width, data, broken, value):
    """int64 values beyond int32 must not wrap into valid ids on the cast to the signature's int32."""
    token_ids = data.draw(hnp.arrays(np.int64, (n, width), elements=st.integers(0, vocabulary_size() - 1)))
    features = {"token_ids": token_ids, "padding_mask": np.ones((n, width), np.int64),
                "segment_ids": np.zeros((n, width), np.int64)}
    if value == "vocab":
        value = vocabulary_size()
    features[broken] = features[broken].copy()
    features[broken][data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, width - 1))] = value
    valid = (broken == "token_ids" and 0 <= value < vocabulary_size()) or \
            (broken == "segment_ids" and 0 <= value < model().backbone.num_segments)
    try:
        out = calibration_features(features, model(), NAMES, sequence_length=None)
    except ValueError as err:
        assert not valid, err
        assert broken in str(err)
        return
    assert valid, f"{broken}={value} was accepted"
    _check_accepted(out, None)
