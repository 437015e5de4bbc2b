"""Layer maps: which teacher encoder layer each student encoder layer learns from (0-based indices).

| kind | student layer i -> teacher layer | from |
| --- | --- | --- |
| `uniform` | floor((i + 1) * n_t / n_s) - 1, i.e. (i + 1) * k - 1 with k = n_t / n_s | TinyBERT |
| `skip` | (i + 1) * k - 1 with the integer stride k = n_t // n_s | Patient-KD "Skip" |
| `last` / `top` | n_t - n_s + i (the last n_s teacher layers) | Patient-KD "Last" |
| `bottom` | i (the first n_s teacher layers) | |
| a dict | as given (student layers left out are not distilled) | |

When n_t is a multiple of n_s, `uniform` and `skip` coincide (every k-th layer, ending at the teacher's top). They
differ otherwise: `uniform` spreads the map over the whole teacher and always ends at its last layer; `skip` keeps
a fixed stride and may stop below the top.

Example:

>>> from tfbertopt.distillation.mapping import layer_map
>>> layer_map("uniform", 3, 12)
{0: 3, 1: 7, 2: 11}
>>> layer_map("last", 2, 6), layer_map("bottom", 2, 6)
({0: 4, 1: 5}, {0: 0, 1: 1})
>>> layer_map("skip", 5, 12)
{0: 1, 1: 3, 2: 5, 3: 7, 4: 9}
>>> layer_map({0: 9}, 1, 6)
Traceback (most recent call last):
...
ValueError: layer map {0: 9}: teacher layer 9 (for student layer 0) is outside the teacher's 6 layers (0..5)
"""

from __future__ import annotations

import difflib

KINDS = ("uniform", "skip", "last", "top", "bottom")


def _check_depths(n_student: int, n_teacher: int) -> None:
    for name, n in (("n_student", n_student), ("n_teacher", n_teacher)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"{name} must be a positive number of encoder layers, got {n!r}")


def uniform(n_student: int, n_teacher: int) -> dict[int, int]:
    """TinyBERT's uniform map: student layer i learns from teacher layer floor((i + 1) * n_t / n_s) - 1."""
    _check_not_deeper("uniform", n_student, n_teacher)
    return {i: (i + 1) * n_teacher // n_student - 1 for i in range(n_student)}


def skip(n_student: int, n_teacher: int) -> dict[int, int]:
    """Patient-KD-Skip: every k-th teacher layer, k = n_t // n_s (student layer i -> (i + 1) * k - 1)."""
    _check_not_deeper("skip", n_student, n_teacher)
    k = n_teacher // n_student
    return {i: (i + 1) * k - 1 for i in range(n_student)}


def last(n_student: int, n_teacher: int) -> dict[int, int]:
    """Patient-KD-Last: the last n_s teacher layers, in order."""
    _check_not_deeper("last", n_student, n_teacher)
    return {i: n_teacher - n_student + i for i in range(n_student)}


def bottom(n_student: int, n_teacher: int) -> dict[int, int]:
    """The first n_s teacher layers, in order."""
    _check_not_deeper("bottom", n_student, n_teacher)
    return {i: i for i in range(n_student)}


def _check_not_deeper(kind: str, n_student: int, n_teacher: int) -> None:
    if n_student > n_teacher:
        raise ValueError(f"the '{kind}' layer map needs a student no deeper than its teacher; the student has "
                         f"{n_student} layers and the teacher {n_teacher}: pass an explicit dict instead")


_BUILDERS = {"uniform": uniform, "skip": skip, "last": last, "top": last, "bottom": bottom}


def check_kind(kind) -> None:
    """ValueError for a map that is neither a known kind nor a dict, suggesting the closest kind name."""
    if isinstance(kind, dict):
        return
    if not isinstance(kind, str) or kind not in _BUILDERS:
        close = difflib.get_close_matches(str(kind), KINDS, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        raise ValueError(f"unknown layer map {kind!r}: use one of {list(KINDS)} or a dict "
                         f"{{student_layer: teacher_layer}}{hint}")


def layer_map(kind_or_dict, n_student: int, n_teacher: int) -> dict[int, int]:
    """The student -> teacher layer map for a student of `n_student` and a teacher of `n_teacher` encoder layers.

    Args:
      kind_or_dict: one of `KINDS`, or a dict {student layer: teacher layer} (0-based; keys may be strings of
        integers, as after a JSON round trip).

    Raises:
      ValueError: an unknown kind, a student deeper than the teacher for a built-in kind, or an index outside a
        model's depth (the message names the index and the depth).
    """
    _check_depths(n_student, n_teacher)
    check_kind(kind_or_dict)
    if not isinstance(kind_or_dict, dict):
        return _BUILDERS[kind_or_dict](n_student, n_teacher)
    result = normalize(kind_or_dict)
    for s_index, t_index in result.items():
        if s_index >= n_student:
            raise ValueError(f"layer map {kind_or_dict}: student layer {s_index} is outside the student's "
                             f"{n_student} layers (0..{n_student - 1})")
        if t_index >= n_teacher:
            raise ValueError(f"layer map {kind_or_dict}: teacher layer {t_index} (for student layer {s_index}) is "
                             f"outside the teacher's {n_teacher} layers (0..{n_teacher - 1})")
    return result


def normalize(mapping: dict) -> dict[int, int]:
    """A dict map with integer keys and values (strings of integers accepted), sorted; ValueError for an empty
    map, a non-integer or a negative index. Depths are checked by `layer_map`."""
    if not isinstance(mapping, dict) or not mapping:
        raise ValueError(f"a layer map dict must map at least one student layer, got {mapping!r}")
    result = {}
    for s, t in mapping.items():
        s_index, t_index = _as_index(s, "student", mapping), _as_index(t, "teacher", mapping)
        for side, index in (("student", s_index), ("teacher", t_index)):
            if index < 0:
                raise ValueError(f"layer map {mapping}: {side} layer {index} is negative; use 0-based indices")
        result[s_index] = t_index
    return dict(sorted(result.items()))


def _as_index(value, side: str, mapping) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"layer map {mapping}: {side} layer {value!r} is not an integer layer index")
    return value
