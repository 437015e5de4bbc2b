"""Pruning under tf.distribute.MirroredStrategy on two logical CPU devices (the training runs in
`mirrored_checks.py`, in a fresh process: logical devices must be configured before TensorFlow starts)."""

import pytest

pytestmark = pytest.mark.xdist_group("mirrored")


def test_pruning_under_mirrored_strategy_matches_single_device_sparsity(mirrored_check):
    out = mirrored_check("pruning")
    mirrored, single = out["mirrored"], out["single"]
    assert len(mirrored["zeros"]) == 6   # 1 layer x (q, k, v, attention output, FFN in, FFN out)
    for path, zeros in mirrored["zeros"].items():
        assert zeros == round(0.7 * mirrored["sizes"][path]), path
        assert single["zeros"][path] == zeros, path
