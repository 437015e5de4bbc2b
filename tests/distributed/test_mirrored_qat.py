"""Quantization-aware training under tf.distribute.MirroredStrategy on two logical CPU devices (the training runs in
`mirrored_checks.py`, in a fresh process): activation ranges are mirrored variables updated in replica context
(averaged across replicas), weights train as on one device."""

import numpy as np
import pytest

pytestmark = pytest.mark.xdist_group("mirrored")


def test_qat_under_mirrored_strategy(mirrored_check):
    out = mirrored_check("qat")
    m, s = out["mirrored"], out["single"]
    assert m["calibrated"] == s["calibrated"]               # calibration runs outside replicas: identical
    assert set(m["ranges"]) == set(s["ranges"]) and any(m["ranges"][k] != m["calibrated"][k] for k in m["ranges"])
    for k, (lo, hi) in m["ranges"].items():
        slo, shi = s["ranges"][k]
        width, swidth = hi - lo, shi - slo
        # Each replica sees half a batch, so its extremes (then averaged) are at most the full batch's.
        assert np.isfinite([lo, hi]).all() and 0.5 * swidth <= width <= 1.05 * swidth, (k, (lo, hi), (slo, shi))
    m_logits, s_logits = np.asarray(m["logits"]), np.asarray(s["logits"])
    assert np.mean(m_logits.argmax(-1) == s_logits.argmax(-1)) >= 0.9
    assert np.abs(m_logits - s_logits).max() < 0.5
