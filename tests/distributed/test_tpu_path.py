"""The TPU-facing path, checked on CPU: TPUs compile the train step with XLA for static shapes and run no string
hash tables. Fixed-length batches (`make_dataset(..., pad_to_batch=False)`) state their sequence length in the
dataset's spec, and distillation from a live teacher into a GMP-pruned student trains with `jit_compile=True` on
them; the teacher-output cache (string keys in a hash table) keeps XLA off. (QAT's fake-quant op compiles with XLA
too, but a second XLA compile costs the suite ~25 s: not tested here.)"""

import keras
import numpy as np

from tfbertopt.data.demo import demo_examples, demo_vocabulary
from tfbertopt.data.pipeline import encode, make_dataset
from tfbertopt.distillation import Distiller, TeacherCache, cache_teacher_outputs
from tfbertopt.models import tiny_bert_classifier
from tfbertopt.pruning import PolynomialDecay, UpdatePruningStep, get_pruning, prune_low_magnitude

SEQUENCE = 16


def _build(seed, width=16):
    return tiny_bert_classifier(demo_vocabulary(), num_layers=1, hidden_dim=width, num_heads=2,
                                intermediate_dim=2 * width, sequence_length=SEQUENCE, seed=seed, dropout=0.0)


def _fixed_batches(model, train):
    ds = make_dataset(encode(train.texts, model.preprocessor), train.labels, 16, shuffle=True, pad_to_batch=False)
    assert all(spec.shape.as_list() == [None, SEQUENCE] for spec in ds.element_spec[0].values())
    return ds


def test_live_distillation_into_a_pruned_student_compiles_with_xla_on_fixed_shapes(tmp_path):
    train = demo_examples("train", 64)
    teacher, student = _build(0, width=32), _build(1)
    prune_low_magnitude(student, PolynomialDecay(0.0, 0.5, 0, 2, frequency=1))
    distiller = Distiller(student, teacher, {"hard_label_weight": 0.5, "logits": "kl", "logits_weight": 0.5,
                                             "hidden": "mse", "hidden_weight": 1.0})
    distiller.compile(optimizer=keras.optimizers.Adam(1e-3), jit_compile=True)
    assert distiller.jit_compile
    history = distiller.fit(_fixed_batches(teacher, train), epochs=1, steps_per_epoch=4,
                            callbacks=[UpdatePruningStep()], verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    assert get_pruning(student).overall_sparsity() > 0.4

    cache = cache_teacher_outputs(teacher, train, tmp_path / "cache", verbose=0)
    cached = Distiller(_build(2), TeacherCache(cache.path), {"hard_label_weight": 0.5, "logits": "kl"})
    cached.compile(optimizer="adam")
    assert not cached.jit_compile      # the cache's string hash table: no XLA, so no TPU

