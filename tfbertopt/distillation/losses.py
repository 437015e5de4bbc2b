"""Distillation losses: small pure `keras.ops` functions (backend-neutral), one per published objective.

Output-level (shape [batch, classes]):

- `kl_with_temperature`: Hinton et al. (2015), KL(softmax(t/T) || softmax(s/T)) * T^2.
- `soft_cross_entropy`: the same soft targets as cross-entropy (equal gradients; differs by the teacher's entropy).
- `logits_mse`: Tang et al. (2019), MSE between raw logits.

Token-level (hidden states [batch, seq, hidden], 0/1 padding mask [batch, seq]): `hidden_mse`, `hidden_cosine`
(TinyBERT, DistilBERT's cosine loss). Attention ([batch, heads, query, key] probabilities): `attention_kl` (MiniLM)
and `attention_mse` (TinyBERT's attention loss, here on probabilities). Sentence-level: `cls_mse` (Patient-KD).

Token-level losses average over the real tokens of the whole batch (padding never counts, in the numerator or
the denominator), so the same batch padded to a different width gives the same loss.

Example:

>>> import numpy as np
>>> from tfbertopt.distillation.losses import kl_with_temperature, hidden_mse
>>> s = np.array([[1.0, 2.0, 3.0]], "float32")
>>> float(kl_with_temperature(s, s, temperature=2.0))
0.0
>>> float(kl_with_temperature(s, s + 5.0, temperature=2.0))   # adding a constant to logits changes nothing
0.0
>>> round(float(kl_with_temperature(s, s[:, ::-1], temperature=1.0)), 4)
1.1504
>>> h = np.ones((1, 3, 2), "float32")
>>> mask = np.array([[1, 1, 0]])
>>> float(hidden_mse(h, h * np.array([1.0, 1.0, 9.0], "float32")[None, :, None], mask))  # padded token ignored
0.0
"""

from __future__ import annotations

from keras import ops

from tfbertopt.distribute import replicas_sum

_EPSILON = 1e-12


def _float(x):
    """As float32 (float64 kept): integer inputs and half-precision activations (mixed precision) alike."""
    x = ops.convert_to_tensor(x)
    return x if str(x.dtype) in ("float32", "float64") else ops.cast(x, "float32")


def _masked_token_mean(per_token, mask):
    """Mean of a [batch, seq] tensor over the positions where `mask` is 1 (0 when there are none). Under a
    tf.distribute strategy: over the real tokens of the whole global batch, times the replica count (Keras divides
    each replica's loss by it), so that replicas whose slices hold different numbers of tokens train as one process
    on the global batch does."""
    mask = ops.cast(ops.convert_to_tensor(mask), per_token.dtype)
    tokens, replicas = replicas_sum(ops.sum(mask))
    return ops.sum(per_token * mask) * replicas / ops.maximum(tokens, 1.0)


def kl_with_temperature(student_logits, teacher_logits, temperature: float = 1.0):
    """Hinton's distillation loss: KL(softmax(t/T) || softmax(s/T)) * T^2, summed over classes, mean over batch.

    The T^2 factor keeps the gradient scale independent of T. The loss is >= 0, is 0 exactly when both give the
    same distribution, and ignores a constant added to either model's logits.
    """
    s = _float(student_logits) / temperature
    t = _float(teacher_logits) / temperature
    t_log_probs = ops.log_softmax(t, axis=-1)
    kl = ops.sum(ops.exp(t_log_probs) * (t_log_probs - ops.log_softmax(s, axis=-1)), axis=-1)
    return ops.mean(kl) * (temperature ** 2)


def soft_cross_entropy(student_logits, teacher_logits, temperature: float = 1.0):
    """Cross-entropy of the student's softened distribution against the teacher's: -sum p_t log p_s * T^2.

    Equals `kl_with_temperature` plus the teacher's entropy (a constant for the student), so the gradients are the
    same; its minimum is that entropy, not 0.
    """
    s = _float(student_logits) / temperature
    t = _float(teacher_logits) / temperature
    ce = -ops.sum(ops.softmax(t, axis=-1) * ops.log_softmax(s, axis=-1), axis=-1)
    return ops.mean(ce) * (temperature ** 2)


def logits_mse(student_logits, teacher_logits):
    """Tang et al. (2019): mean squared error between raw logits (mean over batch and classes)."""
    return ops.mean(ops.square(_float(student_logits) - _float(teacher_logits)))


def hidden_mse(student_hidden, teacher_hidden, mask):
    """MSE between hidden states [batch, seq, hidden]: mean over features, then over the real tokens of `mask`."""
    diff = ops.square(_float(student_hidden) - _float(teacher_hidden))
    return _masked_token_mean(ops.mean(diff, axis=-1), mask)


def hidden_cosine(student_hidden, teacher_hidden, mask):
    """1 - cosine similarity per token [batch, seq, hidden], averaged over the real tokens of `mask`."""
    s, t = _float(student_hidden), _float(teacher_hidden)
    dot = ops.sum(s * t, axis=-1)
    norms = ops.sqrt(ops.sum(ops.square(s), axis=-1) * ops.sum(ops.square(t), axis=-1))
    return _masked_token_mean(1.0 - dot / ops.maximum(norms, _EPSILON), mask)


def _align_heads(student_probs, teacher_probs):
    """When the head counts differ, both sides are averaged over heads (an average of distributions is one)."""
    s, t = _float(student_probs), _float(teacher_probs)
    if s.shape[1] != t.shape[1]:
        s = ops.mean(s, axis=1, keepdims=True)
        t = ops.mean(t, axis=1, keepdims=True)
    return s, t


def attention_kl(student_probs, teacher_probs, mask):
    """MiniLM's attention loss: KL(teacher row || student row) over keys, for [batch, heads, query, key]
    attention probabilities; mean over heads and the real query tokens of `mask` [batch, seq].

    Padded keys are excluded from the sum (the models give them probability 0 anyway). When the student and teacher
    have different head counts, each side is first averaged over its heads, so the loss compares the two average
    attention distributions per token.
    """
    s, t = _align_heads(student_probs, teacher_probs)
    key_mask = ops.cast(ops.convert_to_tensor(mask), s.dtype)[:, None, None, :]
    s_log = ops.log(ops.maximum(s, _EPSILON))
    t_log = ops.log(ops.maximum(t, _EPSILON))
    t_real = t * key_mask
    per_row = ops.sum(ops.where(t_real > 0, t_real * (t_log - s_log), 0.0), axis=-1)   # [batch, heads, query]
    return _masked_token_mean(ops.mean(per_row, axis=1), mask)


def attention_mse(student_probs, teacher_probs, mask):
    """TinyBERT-style attention loss on probabilities [batch, heads, query, key]: squared error averaged over the
    real keys of each row, then over heads and the real query tokens. Head counts that differ are averaged first,
    as in `attention_kl`."""
    s, t = _align_heads(student_probs, teacher_probs)
    mask = ops.cast(ops.convert_to_tensor(mask), s.dtype)
    key_mask = mask[:, None, None, :]
    n_keys = ops.maximum(ops.sum(mask, axis=-1), 1.0)[:, None, None]
    per_row = ops.sum(ops.square(s - t) * key_mask, axis=-1) / n_keys                   # [batch, heads, query]
    return _masked_token_mean(ops.mean(per_row, axis=1), mask)


def cls_mse(student_cls, teacher_cls):
    """Patient-KD's loss on [CLS] vectors [batch, hidden]: squared distance between the L2-normalised vectors,
    summed over features and averaged over the batch (in [0, 4])."""
    s, t = _float(student_cls), _float(teacher_cls)
    s = s / ops.maximum(ops.sqrt(ops.sum(ops.square(s), axis=-1, keepdims=True)), _EPSILON)
    t = t / ops.maximum(ops.sqrt(ops.sum(ops.square(t), axis=-1, keepdims=True)), _EPSILON)
    return ops.mean(ops.sum(ops.square(s - t), axis=-1))


LOGITS_LOSSES = {"kl": kl_with_temperature, "mse": logits_mse, "soft_ce": soft_cross_entropy}
HIDDEN_LOSSES = {"mse": hidden_mse, "cosine": hidden_cosine}
ATTENTION_LOSSES = {"kl": attention_kl, "mse": attention_mse}
