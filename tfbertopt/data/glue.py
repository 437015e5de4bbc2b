"""Strict, quirk-aware loading of GLUE data (official TSV files or tfds).

The official GLUE TSVs are *not* CSV: fields are split on tabs only, sentences
contain unbalanced ``"`` characters, MRPC starts with a UTF-8 BOM, CoLA has no
header and its dev file lacks a final newline. Every malformed row is either
reported (``on_bad_rows="raise"``) or skipped *and recorded* in
``Examples.bad_rows`` (``on_bad_rows="skip"``); nothing is dropped silently.

>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "dev.tsv").write_text('sentence\\tlabel\\na " quote \\t1\\n')
>>> ex = read_glue_tsv(d / "dev.tsv", "sst2", "dev")
>>> ex.texts, ex.labels.tolist()
([('a " quote',)], [1])
"""

from __future__ import annotations

import itertools
import logging
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable

import numpy as np

from tfbertopt.data.tasks import GlueTask, get_task

__all__ = [
    "DataError",
    "GlueDownloadError",
    "Examples",
    "read_glue_tsv",
    "load_glue",
    "find_glue_dir",
    "GLUE_DIR_ENV",
]

logger = logging.getLogger(__name__)

GLUE_DIR_ENV = "TFBERTOPT_GLUE_DIR"
_BOM = b"\xef\xbb\xbf"
_SPLIT_ALIASES = {"train": "train", "dev": "dev", "validation": "dev",
                  "dev_matched": "dev"}
_BAD_ROW_MODES = ("raise", "skip")
# tfds glue feature names, in the same order as GlueTask.text_columns.
_TFDS_TEXT_KEYS = {
    "cola": ("sentence",), "sst2": ("sentence",),
    "mrpc": ("sentence1", "sentence2"), "qqp": ("question1", "question2"),
    "stsb": ("sentence1", "sentence2"), "mnli": ("premise", "hypothesis"),
    "qnli": ("question", "sentence"), "rte": ("sentence1", "sentence2"),
}


class DataError(ValueError):
    """Malformed GLUE data; the message names the file, the line and the problem.

    >>> str(DataError("unknown label 'x'", "dev.tsv", 7))
    "dev.tsv, line 7: unknown label 'x'"
    """

    def __init__(self, problem: str, path=None, line: int | None = None,
                 *, unit: str = "line"):
        self.problem, self.path, self.line = problem, path, line
        where = "" if path is None else str(path)
        if line is not None:
            where = f"{where}, {unit} {line}" if where else f"{unit} {line}"
        super().__init__(f"{where}: {problem}" if where else problem)


class GlueDownloadError(RuntimeError):
    """No local GLUE folder was given and the tensorflow_datasets load failed."""


class _BadRow(Exception):
    """Internal: one row is malformed (carries the reason)."""


@dataclass(eq=False, repr=False)
class Examples:
    """Loaded examples of one task/split.

    ``labels`` are int32 class ids (float32 scores for STS-B); ``bad_rows``
    holds ``(line number, reason)`` for rows skipped under ``on_bad_rows="skip"``
    (0-based example index for tfds sources).

    >>> import numpy as np
    >>> ex = Examples(get_task("sst2"), "dev", [("a",), ("b",), ("c",)],
    ...               np.array([0, 1, 0], np.int32), "mem", [])
    >>> len(ex.take(2)), len(ex.shuffled_subset(2, seed=0))
    (2, 2)
    """

    task: GlueTask
    split: str
    texts: list[tuple[str, ...]]
    labels: np.ndarray
    source: str
    bad_rows: list[tuple[int, str]] = field(default_factory=list)

    def __post_init__(self):
        if len(self.texts) != len(self.labels):
            raise ValueError(f"{len(self.texts)} texts but {len(self.labels)} "
                             f"labels in {self.source}")

    def __len__(self) -> int:
        return len(self.texts)

    def __repr__(self) -> str:
        return (f"Examples(task={self.task.name!r}, split={self.split!r}, "
                f"n={len(self)}, bad_rows={len(self.bad_rows)}, "
                f"source={self.source!r})")

    def take(self, n: int) -> Examples:
        """First ``n`` examples (all of them if ``n >= len(self)``)."""
        _check_count(n, "n")
        return self._select(np.arange(min(n, len(self))))

    def shuffled_subset(self, n: int, seed: int = 0) -> Examples:
        """``n`` examples drawn without replacement, in a seeded random order."""
        _check_count(n, "n")
        order = np.random.default_rng(seed).permutation(len(self))
        return self._select(order[:n])

    def _select(self, idx: np.ndarray) -> Examples:
        return replace(self, texts=[self.texts[i] for i in idx],
                       labels=self.labels[idx], bad_rows=list(self.bad_rows))


def _check_count(n, name: str) -> None:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"{name} must be a non-negative int, got {n!r}")


def _check_mode(on_bad_rows: str) -> None:
    if on_bad_rows not in _BAD_ROW_MODES:
        raise ValueError(f"on_bad_rows must be one of {_BAD_ROW_MODES}, "
                         f"got {on_bad_rows!r}")


def _normalize_split(split: str, source=None) -> str:
    key = str(split).strip().lower()
    if key in _SPLIT_ALIASES:
        return _SPLIT_ALIASES[key]
    if key.startswith("test"):
        raise DataError(f"split {split!r} is not supported: GLUE test sets have "
                        "no public labels; use 'train' or 'dev'", source)
    raise DataError(f"unknown split {split!r}; expected 'train' or 'dev' "
                    f"(aliases: {sorted(_SPLIT_ALIASES)})", source)


# ----------------------------------------------------------------- TSV files

def _split_lines(data: bytes) -> list[tuple[int, bytes]]:
    """Split raw bytes on ``\\n`` only, returning ``(1-based line no, bytes)``.

    The BOM is removed, a final newline does not create an extra line and a
    trailing ``\\r`` (CRLF copies) is dropped. ``str.splitlines`` is avoided on
    purpose: it would also break on ``\\x0b``, ``\\x1c``, ``\\u2028``...
    """
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    pieces = data.split(b"\n")
    if pieces and pieces[-1] == b"":
        pieces.pop()
    return [(i, p[:-1] if p.endswith(b"\r") else p)
            for i, p in enumerate(pieces, start=1)]


def _decode(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise _BadRow(f"not valid UTF-8 ({err.reason} at byte {err.start})") from None


def _header_indices(task: GlueTask, header: list[str], path) -> tuple:
    names = [h.strip() for h in header]
    wanted = (*task.text_columns, task.label_column)
    missing = [c for c in wanted if c not in names]
    if missing:
        raise DataError(f"header is missing column(s) {missing} needed for task "
                        f"{task.name!r}; found header {names}", path, 1)
    idx = [names.index(c) for c in wanted]
    return tuple(idx[:-1]), idx[-1], len(names), tuple(names)


def _positional_indices(task: GlueTask) -> tuple:
    cols = (*task.text_columns, task.label_column)
    width = max(cols) + 1
    names = tuple(f"column {i + 1}" for i in range(width))
    return tuple(task.text_columns), task.label_column, width, names


def _parse_label(raw: str, task: GlueTask):
    value = raw.strip()
    if task.is_regression:
        try:
            score = float(value)
        except ValueError:
            raise _BadRow(f"score {value!r} is not a number") from None
        if not 0.0 <= score <= 5.0:
            raise _BadRow(f"score {value!r} is outside [0, 5]")
        return score
    if value not in task.labels:
        raise _BadRow(f"unknown label {value!r} (expected one of {list(task.labels)})")
    return task.labels.index(value)


def _parse_row(raw: bytes, task: GlueTask, layout: tuple):
    text_idx, label_idx, width, names = layout
    line = _decode(raw)
    if not line.strip():
        raise _BadRow("blank line")
    fields = line.split("\t")
    if len(fields) != width:
        raise _BadRow(f"expected {width} tab-separated columns, found {len(fields)}")
    texts = tuple(fields[i].strip() for i in text_idx)
    for i, text in zip(text_idx, texts):
        if not text:
            raise _BadRow(f"empty text in {names[i]!r}")
    return texts, _parse_label(fields[label_idx], task)


def _layout_and_rows(lines, task: GlueTask, path):
    if not task.has_header:
        return _positional_indices(task), lines
    lineno, raw = lines[0]
    try:
        header = _decode(raw).split("\t")
    except _BadRow as bad:
        raise DataError(f"header: {bad}", path, lineno) from None
    layout = _header_indices(task, header, path)
    if len(lines) == 1:
        raise DataError("file has a header but no data rows", path, lineno + 1)
    return layout, lines[1:]


def _labels_array(labels: list, task: GlueTask) -> np.ndarray:
    return np.asarray(labels, dtype=np.float32 if task.is_regression else np.int32)


def _finish(task, split, source, texts, labels, bad_rows, unit="line",
            allow_empty=False):
    if not texts and not bad_rows and not allow_empty:
        raise DataError("no examples found", source)
    if not texts and bad_rows:
        first_no, first_reason = bad_rows[0]
        raise DataError(f"no valid rows ({len(bad_rows)} bad; first: "
                        f"{first_reason})", source, first_no, unit=unit)
    if bad_rows:
        logger.warning("%s: skipped %d bad row(s) of %d (first at %s %d: %s)",
                       source, len(bad_rows), len(texts) + len(bad_rows),
                       unit, *bad_rows[0])
    return Examples(task, split, texts, _labels_array(labels, task), source,
                    bad_rows)


def read_glue_tsv(path, task, split, on_bad_rows: str = "raise") -> Examples:
    """Read one official GLUE ``.tsv`` file.

    ``task`` is a :class:`GlueTask` or a name; ``split`` is ``"train"`` or
    ``"dev"`` (aliases ``"validation"``, ``"dev_matched"``). Malformed rows raise
    :class:`DataError` or, with ``on_bad_rows="skip"``, land in ``bad_rows``.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "train.tsv"
    >>> _ = p.write_bytes(b"gj04\\t1\\t\\tA fine sentence .\\ngj04\\t0\\t*\\tBad .")
    >>> ex = read_glue_tsv(p, "cola", "train")
    >>> ex.texts, ex.labels.tolist()
    ([('A fine sentence .',), ('Bad .',)], [1, 0])
    """
    task, path = get_task(task), Path(path)
    split = _normalize_split(split, path)
    _check_mode(on_bad_rows)
    data = path.read_bytes()
    if not data.removeprefix(_BOM).strip():
        raise DataError("file is empty (expected GLUE TSV rows for task "
                        f"{task.name!r})", path, 1)
    layout, rows = _layout_and_rows(_split_lines(data), task, path)
    texts, labels, bad_rows = [], [], []
    for lineno, raw in rows:
        try:
            text, label = _parse_row(raw, task, layout)
        except _BadRow as bad:
            if on_bad_rows == "raise":
                raise DataError(str(bad), path, lineno) from None
            bad_rows.append((lineno, str(bad)))
            continue
        texts.append(text)
        labels.append(label)
    return _finish(task, split, str(path), texts, labels, bad_rows)


# ------------------------------------------------------------------- tfds

def _record_value(record: dict, key: str, source, index: int):
    if key not in record:
        raise DataError(f"record has no feature {key!r} (features: "
                        f"{sorted(record)})", source, index, unit="example index")
    value = record[key]
    return value.item() if isinstance(value, np.ndarray) else value


def _tfds_text(value) -> str:
    text = _decode(value) if isinstance(value, bytes) else str(value)
    return text.strip()


def _tfds_label(value, task: GlueTask):
    if task.is_regression:
        score = float(value)
        if not 0.0 <= score <= 5.0:
            raise _BadRow(f"score {score!r} is outside [0, 5]")
        return score
    label = int(value)
    if not 0 <= label < task.num_classes:
        raise _BadRow(f"label {label} is outside [0, {task.num_classes}) "
                      "(tfds uses -1 for unlabeled test examples)")
    return label


def _convert_record(record: dict, task: GlueTask, source, index: int):
    keys = _TFDS_TEXT_KEYS[task.name]
    texts = tuple(_tfds_text(_record_value(record, k, source, index)) for k in keys)
    for key, text in zip(keys, texts):
        if not text:
            raise _BadRow(f"empty text in {key!r}")
    return texts, _tfds_label(_record_value(record, "label", source, index), task)


def _examples_from_records(records: Iterable[dict], task: GlueTask, split: str,
                           source: str, on_bad_rows: str,
                           allow_empty: bool = False) -> Examples:
    texts, labels, bad_rows = [], [], []
    for index, record in enumerate(records):
        try:
            text, label = _convert_record(record, task, source, index)
        except _BadRow as bad:
            if on_bad_rows == "raise":
                raise DataError(str(bad), source, index, unit="example index") from None
            bad_rows.append((index, str(bad)))
            continue
        texts.append(text)
        labels.append(label)
    return _finish(task, split, source, texts, labels, bad_rows,
                   unit="example index", allow_empty=allow_empty)


def _tfds_split(task: GlueTask, split: str) -> str:
    if split == "train":
        return "train"
    return "validation_matched" if task.name == "mnli" else "validation"


def _load_tfds(task: GlueTask, split: str, on_bad_rows: str,
               max_examples: int | None) -> Examples:
    tfds_split = _tfds_split(task, split)
    try:
        import tensorflow_datasets as tfds

        dataset = tfds.load(task.tfds_name, split=tfds_split, shuffle_files=False)
    except Exception as err:  # any failure: no network, missing package, ...
        raise GlueDownloadError(
            f"Cannot load GLUE task {task.name!r} ({split}): no local GLUE folder "
            f"was given (pass data_dir= or set {GLUE_DIR_ENV}) and the tfds "
            f"download of {task.tfds_name!r} split {tfds_split!r} failed with "
            f"{type(err).__name__}: {err}") from err
    records = dataset.as_numpy_iterator() if hasattr(dataset, "as_numpy_iterator") \
        else iter(dataset)
    if max_examples is not None:
        records = itertools.islice(records, max_examples)
    return _examples_from_records(records, task, split, f"tfds:{task.tfds_name}",
                                  on_bad_rows, allow_empty=max_examples == 0)


# ------------------------------------------------------------------ public

def find_glue_dir(data_dir=None) -> Path | None:
    """Local GLUE folder: ``data_dir``, else ``$TFBERTOPT_GLUE_DIR``, else None.

    A given but non-existent folder raises ``FileNotFoundError`` rather than
    silently falling back to a download.

    >>> find_glue_dir(None) is None or isinstance(find_glue_dir(None), Path)
    True
    """
    if data_dir is not None:
        path, origin = Path(data_dir).expanduser(), "data_dir"
    else:
        env = os.environ.get(GLUE_DIR_ENV, "").strip()
        if not env:
            return None
        path, origin = Path(env).expanduser(), f"${GLUE_DIR_ENV}"
    if not path.is_dir():
        raise FileNotFoundError(f"GLUE directory {str(path)!r} (from {origin}) does "
                                "not exist or is not a directory")
    return path


def load_glue(task, split: str = "train", data_dir=None,
              on_bad_rows: str = "raise", max_examples: int | None = None) -> Examples:
    """Load a GLUE task split from a local GLUE folder, else via tfds.

    The local file is ``<dir>/<task.folder>/train.tsv`` or ``<task.dev_file>``
    (the unzipped official GLUE layout). Without a folder, tensorflow_datasets
    is used; labels get the same ids either way.

    >>> import os, pathlib, tempfile
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> (d / "RTE").mkdir()
    >>> _ = (d / "RTE" / "dev.tsv").write_text(
    ...     "index\\tsentence1\\tsentence2\\tlabel\\n0\\tA.\\tB.\\tnot_entailment\\n")
    >>> load_glue("rte", "validation", data_dir=d).labels.tolist()
    [1]
    """
    task = get_task(task)
    split = _normalize_split(split)
    _check_mode(on_bad_rows)
    if max_examples is not None:
        _check_count(max_examples, "max_examples")
    glue_dir = find_glue_dir(data_dir)
    if glue_dir is None:
        examples = _load_tfds(task, split, on_bad_rows, max_examples)
    else:
        examples = _read_local(glue_dir, task, split, on_bad_rows)
        if max_examples is not None:
            examples = examples.take(max_examples)
    logger.info("Loaded %d %s/%s examples from %s", len(examples), task.name,
                split, examples.source)
    return examples


def _read_local(glue_dir: Path, task: GlueTask, split: str,
                on_bad_rows: str) -> Examples:
    filename = "train.tsv" if split == "train" else task.dev_file
    path = glue_dir / task.folder / filename
    if not path.is_file():
        raise FileNotFoundError(
            f"GLUE file not found: {str(path)!r}. Expected the {task.name} {split} "
            f"split at <glue_dir>/{task.folder}/{filename} (the layout of the "
            "unzipped official GLUE data).")
    return read_glue_tsv(path, task, split, on_bad_rows)
