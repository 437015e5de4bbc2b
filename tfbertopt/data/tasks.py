"""GLUE task specifications.

Each :class:`GlueTask` describes where a task lives in the official GLUE zip,
which TSV columns hold the text segments and the label, the label vocabulary
(in the same class-id order as ``tensorflow_datasets``) and the primary metric.

>>> from tfbertopt.data.tasks import get_task
>>> get_task("SST-2").num_classes
2
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass

__all__ = ["GlueTask", "TASKS", "get_task"]


@dataclass(frozen=True)
class GlueTask:
    """Static description of one GLUE task.

    ``text_columns`` / ``label_column`` are header names, or 0-based column
    positions for files without a header (CoLA). ``labels`` lists the label
    strings in class-id order (``None`` for the STS-B regression task).

    >>> t = TASKS["mnli"]
    >>> t.labels.index("neutral"), t.is_pair, t.is_regression
    (1, True, False)
    """

    name: str
    folder: str
    text_columns: tuple
    label_column: str | int
    labels: tuple | None
    metric: str
    has_header: bool
    dev_file: str
    tfds_name: str

    @property
    def num_classes(self) -> int:
        """Number of output units: label count, or 1 for regression."""
        return 1 if self.labels is None else len(self.labels)

    @property
    def is_regression(self) -> bool:
        """True for STS-B (float score in [0, 5])."""
        return self.labels is None

    @property
    def is_pair(self) -> bool:
        """True when every example has two text segments."""
        return len(self.text_columns) == 2


_BINARY = ("0", "1")
_RTE_LIKE = ("entailment", "not_entailment")

TASKS: dict[str, GlueTask] = {
    t.name: t
    for t in (
        GlueTask("cola", "CoLA", (3,), 1, _BINARY, "matthews_corrcoef",
                 False, "dev.tsv", "glue/cola"),
        GlueTask("sst2", "SST-2", ("sentence",), "label", _BINARY, "accuracy",
                 True, "dev.tsv", "glue/sst2"),
        GlueTask("mrpc", "MRPC", ("#1 String", "#2 String"), "Quality",
                 _BINARY, "f1", True, "dev.tsv", "glue/mrpc"),
        GlueTask("qqp", "QQP", ("question1", "question2"), "is_duplicate",
                 _BINARY, "f1", True, "dev.tsv", "glue/qqp"),
        GlueTask("stsb", "STS-B", ("sentence1", "sentence2"), "score", None,
                 "pearson", True, "dev.tsv", "glue/stsb"),
        GlueTask("mnli", "MNLI", ("sentence1", "sentence2"), "gold_label",
                 ("entailment", "neutral", "contradiction"), "accuracy",
                 True, "dev_matched.tsv", "glue/mnli"),
        GlueTask("qnli", "QNLI", ("question", "sentence"), "label", _RTE_LIKE,
                 "accuracy", True, "dev.tsv", "glue/qnli"),
        GlueTask("rte", "RTE", ("sentence1", "sentence2"), "label", _RTE_LIKE,
                 "accuracy", True, "dev.tsv", "glue/rte"),
    )
}


def _normalize(name: str) -> str:
    key = name.strip().lower()
    if key.startswith("glue/"):
        key = key[len("glue/"):]
    return key.replace("-", "").replace("_", "").replace(" ", "")


def get_task(name: str | GlueTask) -> GlueTask:
    """Look up a task by name, case/dash/underscore-insensitively.

    Accepts the short name (``"sst2"``), the GLUE folder (``"SST-2"``) or the
    tfds name (``"glue/sst2"``); a :class:`GlueTask` is returned unchanged.

    >>> get_task("STS-B").name, get_task("Sst_2").folder
    ('stsb', 'SST-2')
    """
    if isinstance(name, GlueTask):
        return name
    if not isinstance(name, str):
        raise TypeError(f"task name must be a str, got {type(name).__name__}")
    key = _normalize(name)
    if key in TASKS:
        return TASKS[key]
    known = ", ".join(sorted(TASKS))
    close = difflib.get_close_matches(key, list(TASKS), n=1, cutoff=0.5)
    hint = f" Did you mean {close[0]!r}?" if close else ""
    raise ValueError(f"Unknown GLUE task {name!r}. Known tasks: {known}.{hint}")
