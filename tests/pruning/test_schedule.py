"""Schedules: TFMOT semantics, property-tested."""

import keras
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.profiles import examples  # pytest puts tests/ on sys.path

from tfbertopt.pruning.schedule import ConstantSparsity, FunctionSparsity, PolynomialDecay

sparsity = st.floats(0.0, 0.99)
steps = st.integers(0, 5000)


@settings(max_examples=examples(200), deadline=None)
@given(initial=sparsity, final=sparsity, begin=st.integers(0, 1000), length=st.integers(1, 3000),
       power=st.floats(0.5, 5), frequency=st.integers(1, 200), step=steps)
def test_polynomial_decay_bounded_exact_at_ends_and_monotone(initial, final, begin, length, power, frequency, step):
    s = PolynomialDecay(initial, final, begin, begin + length, power=power, frequency=frequency)
    value = s(step)[1]
    assert 0.0 <= value < 1.0
    assert s(begin)[1] == pytest.approx(initial) and s(begin)[0]
    assert s(begin + length) == (True, pytest.approx(final))
    assert s(begin + length + 1 + step)[0] is False  # masks frozen after end_step
    later = s(step + 1)[1]
    if begin <= step:
        assert (later - value) * (final - initial) >= -1e-12  # moves toward final, never back
    if step < begin:
        assert value == 0.0 and not s(step)[0]


@settings(max_examples=examples(100), deadline=None)
@given(target=sparsity, begin=st.integers(0, 500), frequency=st.integers(1, 100), step=steps)
def test_constant_sparsity(target, begin, frequency, step):
    s = ConstantSparsity(target, begin, frequency=frequency)
    should, value = s(step)
    assert value == (target if step >= begin else 0.0)
    assert should == (step >= begin and (step - begin) % frequency == 0)


@pytest.mark.parametrize("make, message", [
    (lambda: ConstantSparsity(1.0), r"target_sparsity must be in \[0, 1\)"),
    (lambda: ConstantSparsity(-0.1), r"target_sparsity must be in \[0, 1\)"),
    (lambda: PolynomialDecay(0.0, 0.9, 100, 50), "end_step \\(50\\) must be -1 \\(never stop\\) or >= begin_step"),
    (lambda: PolynomialDecay(0.0, 0.9, 0, -1), "needs an end_step"),
    (lambda: ConstantSparsity(0.5, frequency=0), "frequency must be an integer >= 1"),
    (lambda: PolynomialDecay(0.0, 0.9, 0, 10, power=0), "power must be > 0"),
    (lambda: FunctionSparsity(0.5), "fn must be callable"),
])
def test_bad_schedules_rejected(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_function_sparsity_follows_a_keras_schedule_and_serializes():
    decay = keras.optimizers.schedules.PiecewiseConstantDecay([100, 200], [0.0, 0.5, 0.8])
    s = FunctionSparsity(decay, frequency=50)
    assert [s(t)[1] for t in (0, 150, 250)] == [0.0, 0.5, pytest.approx(0.8)]
    clone = FunctionSparsity.from_config(s.get_config())
    assert clone(150) == s(150)
    with pytest.raises(ValueError, match=r"must be in \[0, 1\)"):
        FunctionSparsity(lambda step: 1.5)(0)
    with pytest.raises(TypeError, match="cannot be serialized"):
        FunctionSparsity(lambda step: 0.1).get_config()


def test_schedules_round_trip_through_keras_serialization():
    for s in (ConstantSparsity(0.3, 5, 50, 7), PolynomialDecay(0.1, 0.9, 10, 100, power=2, frequency=5)):
        clone = keras.saving.deserialize_keras_object(keras.saving.serialize_keras_object(s))
        assert type(clone) is type(s) and clone.get_config() == s.get_config()
