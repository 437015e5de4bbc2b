"""Shared fixtures: a tiny BERT classifier and the synthetic demo data (no network, no ../shared).

The suite runs across the cores with pytest-xdist (`-n auto` in pyproject.toml). Each worker sizes TensorFlow's,
XLA's and the BLAS thread pools to its share of the cores before any of them starts, so that N workers on N cores do
not oversubscribe them; the variables are inherited by the subprocesses that tests start (notebook kernels, fresh
loaders, the JAX and MirroredStrategy scripts).
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _threads_per_worker() -> int:
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    return max(1, (os.cpu_count() or 1) // workers)


if os.environ.get("PYTEST_XDIST_WORKER"):
    _threads = str(_threads_per_worker())
    for _name in ("TF_NUM_INTRAOP_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(_name, _threads)
    os.environ.setdefault("TF_NUM_INTEROP_THREADS", "2")
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false")

import pytest  # noqa: E402

from helpers.profiles import register_hypothesis_profiles  # noqa: E402

register_hypothesis_profiles()


@pytest.fixture(scope="session")
def demo_data():
    from tfbertopt.data.demo import demo_examples

    return demo_examples("train", 256), demo_examples("dev", 64)


def _tiny_classifier():
    from tfbertopt.data.demo import demo_vocabulary
    from tfbertopt.models import tiny_bert_classifier

    return tiny_bert_classifier(demo_vocabulary(), num_layers=2, hidden_dim=32, num_heads=2, intermediate_dim=64,
                                sequence_length=16)


@pytest.fixture()
def tiny_classifier():
    """A fresh 2-layer H32 BertTextClassifier over the demo vocabulary, sequence length 16."""
    return _tiny_classifier()


@pytest.fixture(scope="module")
def shared_classifier():
    """`tiny_classifier`, built once per module for tests that only read it (export, compare, verify); at the end
    of the module its weights must be unchanged, so a test that trains or assigns must take `tiny_classifier`."""
    import numpy as np

    model = _tiny_classifier()
    before = [np.array(w) for w in model.weights]
    yield model
    changed = [w.path for w, b in zip(model.weights, before) if not np.array_equal(np.asarray(w), b)]
    assert not changed, f"a test changed the module's shared_classifier ({changed[:3]}); give it tiny_classifier"


@pytest.fixture()
def stub_int8_peak(monkeypatch):
    """The recipe runner's benchmark stage measures this machine's int8 matmul peak (seconds of converting and
    timing a large int8 stack); runner tests check what is done with the number, so they get a fixed one.
    `tfbertopt.bench.latency`'s doctest measures the real peak."""
    from tfbertopt.bench import latency

    monkeypatch.setattr(latency, "int8_peak_gmacs", lambda *args, **kwargs: 400.0)
    return 400.0
