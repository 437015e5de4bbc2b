"""Layer maps: the papers' maps, and clear errors for maps a model cannot take."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers.profiles import examples  # pytest puts tests/ on sys.path

from tfbertopt.distillation.mapping import KINDS, layer_map


def test_paper_maps():
    assert layer_map("uniform", 4, 12) == {0: 2, 1: 5, 2: 8, 3: 11}          # TinyBERT-4 from BERT-base
    assert layer_map("skip", 6, 12) == {0: 1, 1: 3, 2: 5, 3: 7, 4: 9, 5: 11}  # PKD-Skip
    assert layer_map("last", 6, 12) == {i: 6 + i for i in range(6)}          # PKD-Last
    assert layer_map("top", 6, 12) == layer_map("last", 6, 12)
    assert layer_map("bottom", 3, 12) == {0: 0, 1: 1, 2: 2}


def test_uniform_and_skip_differ_when_depths_do_not_divide():
    assert layer_map("uniform", 5, 12) == {0: 1, 1: 3, 2: 6, 3: 8, 4: 11}
    assert layer_map("skip", 5, 12) == {0: 1, 1: 3, 2: 5, 3: 7, 4: 9}


@settings(max_examples=examples(60), deadline=None)
@given(st.integers(1, 24).flatmap(lambda n_t: st.tuples(st.integers(1, n_t), st.just(n_t))), st.sampled_from(KINDS))
def test_builtin_maps_are_increasing_and_inside_the_teacher(depths, kind):
    n_s, n_t = depths
    m = layer_map(kind, n_s, n_t)
    assert sorted(m) == list(range(n_s))
    values = list(m.values())
    assert all(0 <= v < n_t for v in values) and values == sorted(set(values))
    if kind in ("uniform", "last", "top"):
        assert values[-1] == n_t - 1


def test_explicit_dicts():
    assert layer_map({1: 5, 0: 2}, 2, 6) == {0: 2, 1: 5}
    assert layer_map({"0": "3"}, 1, 4) == {0: 3}      # as after a JSON round trip


def test_teacher_index_outside_depth_names_index_and_depth():
    with pytest.raises(ValueError, match=r"teacher layer 6 .*teacher's 6 layers"):
        layer_map({0: 6}, 1, 6)


def test_student_index_outside_depth():
    with pytest.raises(ValueError, match=r"student layer 2 .*student's 2 layers"):
        layer_map({2: 0}, 2, 6)


@pytest.mark.parametrize("bad", [{0: -1}, {0: 1.5}, {0: True}, {}, {"x": 1}])
def test_malformed_dicts(bad):
    with pytest.raises(ValueError):
        layer_map(bad, 2, 6)


def test_unknown_kind_suggests_closest():
    with pytest.raises(ValueError, match="did you mean 'uniform'"):
        layer_map("unifrom", 2, 6)


def test_student_deeper_than_teacher():
    with pytest.raises(ValueError, match="no deeper than its teacher"):
        layer_map("uniform", 4, 2)
    assert layer_map({3: 1}, 4, 2) == {3: 1}


@pytest.mark.parametrize("n", [0, -1, 2.0])
def test_bad_depths(n):
    with pytest.raises(ValueError):
        layer_map("uniform", n, 6)
