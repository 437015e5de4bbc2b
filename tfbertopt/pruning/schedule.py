"""Pruning schedules, with tensorflow-model-optimization's names and semantics.

A schedule maps the training step to `(should_prune, sparsity)`: masks are recomputed only on steps where
`should_prune` is true (every `frequency` steps inside [begin_step, end_step]), to the sparsity given.

Example:

>>> from tfbertopt.pruning.schedule import PolynomialDecay
>>> s = PolynomialDecay(initial_sparsity=0.0, final_sparsity=0.9, begin_step=0, end_step=1000, frequency=100)
>>> s(0), s(1000)
((True, 0.0), (True, 0.9))
>>> s(50)[0]  # masks only change every `frequency` steps
False
>>> round(s(500)[1], 4)  # power 3: fast early, slow late
0.7875
"""

from __future__ import annotations

import keras


class PruningSchedule:
    """Base class: subclasses implement `sparsity(step)` and keep begin/end/frequency semantics."""

    def __init__(self, begin_step: int = 0, end_step: int = -1, frequency: int = 100):
        if not isinstance(begin_step, int) or begin_step < 0:
            raise ValueError(f"begin_step must be an integer >= 0, got {begin_step!r}")
        if not isinstance(end_step, int) or (end_step != -1 and end_step < begin_step):
            raise ValueError(f"end_step ({end_step}) must be -1 (never stop) or >= begin_step ({begin_step})")
        if not isinstance(frequency, int) or frequency < 1:
            raise ValueError(f"frequency must be an integer >= 1, got {frequency!r}")
        self.begin_step, self.end_step, self.frequency = begin_step, end_step, frequency

    @staticmethod
    def _check_sparsity(name: str, value: float) -> float:
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
        return float(value)

    def should_prune(self, step: int) -> bool:
        in_range = step >= self.begin_step and (self.end_step == -1 or step <= self.end_step)
        on_beat = (step - self.begin_step) % self.frequency == 0 or step == self.end_step
        return in_range and on_beat

    def sparsity(self, step: int) -> float:
        raise NotImplementedError

    def __call__(self, step: int) -> tuple[bool, float]:
        step = int(step)
        return self.should_prune(step), self.sparsity(step)

    def get_config(self) -> dict:
        return {"begin_step": self.begin_step, "end_step": self.end_step, "frequency": self.frequency}

    @classmethod
    def from_config(cls, config):
        return cls(**config)


@keras.saving.register_keras_serializable(package="tfbertopt")
class ConstantSparsity(PruningSchedule):
    """`target_sparsity` from `begin_step` on (TFMOT's ConstantSparsity)."""

    def __init__(self, target_sparsity: float, begin_step: int = 0, end_step: int = -1, frequency: int = 100):
        super().__init__(begin_step, end_step, frequency)
        self.target_sparsity = self._check_sparsity("target_sparsity", target_sparsity)

    def sparsity(self, step: int) -> float:
        return self.target_sparsity if step >= self.begin_step else 0.0

    def get_config(self):
        return {"target_sparsity": self.target_sparsity, **super().get_config()}


@keras.saving.register_keras_serializable(package="tfbertopt")
class PolynomialDecay(PruningSchedule):
    """Gradual magnitude pruning (Zhu & Gupta 2017): s(t) = s_f + (s_i - s_f) (1 - p)^power, p = progress.

    `end_step` is required; after it the sparsity stays at `final_sparsity` (masks stay fixed).
    """

    def __init__(self, initial_sparsity: float, final_sparsity: float, begin_step: int, end_step: int,
                 power: float = 3, frequency: int = 100):
        if end_step == -1:
            raise ValueError("PolynomialDecay needs an end_step (the step where final_sparsity is reached)")
        super().__init__(begin_step, end_step, frequency)
        self.initial_sparsity = self._check_sparsity("initial_sparsity", initial_sparsity)
        self.final_sparsity = self._check_sparsity("final_sparsity", final_sparsity)
        if power <= 0:
            raise ValueError(f"power must be > 0, got {power}")
        self.power = float(power)

    def sparsity(self, step: int) -> float:
        if step < self.begin_step:
            return 0.0
        span = max(1, self.end_step - self.begin_step)
        progress = min(1.0, (step - self.begin_step) / span)
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1.0 - progress) ** self.power

    def get_config(self):
        return {"initial_sparsity": self.initial_sparsity, "final_sparsity": self.final_sparsity,
                "power": self.power, **super().get_config()}


@keras.saving.register_keras_serializable(package="tfbertopt")
class FunctionSparsity(PruningSchedule):
    """Sparsity that follows a Keras learning-rate-style schedule or any callable of the step.

    `fn` may be a `keras.optimizers.schedules.LearningRateSchedule` (serialized with the schedule) or a Python
    callable (not serializable). Its values must lie in [0, 1).

    >>> import keras
    >>> decay = keras.optimizers.schedules.PiecewiseConstantDecay([100, 200], [0.0, 0.5, 0.8])
    >>> FunctionSparsity(decay, frequency=50)(150)
    (True, 0.5)
    """

    def __init__(self, fn, begin_step: int = 0, end_step: int = -1, frequency: int = 100):
        super().__init__(begin_step, end_step, frequency)
        if isinstance(fn, dict):
            fn = keras.saving.deserialize_keras_object(fn)
        if not callable(fn):
            raise ValueError(f"fn must be callable (a LearningRateSchedule or a function of the step), got {fn!r}")
        self.fn = fn

    def sparsity(self, step: int) -> float:
        if step < self.begin_step:
            return 0.0
        value = float(keras.ops.convert_to_numpy(self.fn(step)))
        return self._check_sparsity(f"sparsity from {self.fn!r} at step {step}", value)

    def get_config(self):
        if not isinstance(self.fn, keras.optimizers.schedules.LearningRateSchedule):
            raise TypeError("FunctionSparsity with a plain Python function cannot be serialized; use a "
                            "keras LearningRateSchedule")
        return {"fn": keras.saving.serialize_keras_object(self.fn), **super().get_config()}
