"""Byte-level mutation fuzzing of valid GLUE TSV files through `load_glue` (the GLUE folder layout) and
`read_glue_tsv`; complements tests/data/test_glue.py, whose fuzzers build rows (good or bad) from scratch or
append random bytes. Here a valid file is corrupted in place: bytes flipped, inserted (tabs, newlines, CR,
quotes, BOMs, invalid UTF-8) or deleted, rows truncated, tabs added or removed, labels replaced by unknown ones,
lines duplicated or blanked, the file emptied.

Whatever the damage, the loader either raises `DataError` naming the file (and the line, when it has one) or
accounts for every line of the file: with on_bad_rows="raise" it loads exactly one example per data line, with
"skip" loaded + recorded bad rows == data lines. Never another exception type, never silently fewer rows; an
undamaged file loads exactly its rows.
"""

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from helpers.profiles import examples  # pytest puts tests/ on sys.path

from tfbertopt.data import TASKS, DataError, load_glue, read_glue_tsv

EXAMPLES = 200   # max_examples of each fuzzer below (counted in the report of issue 8)
BOM = b"\xef\xbb\xbf"
HEADERS = {
    "sst2": ["sentence", "label"],
    "mrpc": ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
    "qnli": ["index", "question", "sentence", "label"],
    "stsb": ["index", "genre", "filename", "year", "old_index", "source1", "source2", "sentence1", "sentence2",
             "score"],
    "mnli": ["index", "promptID", "pairID", "sentence1", "sentence2", "gold_label"],
    "cola": None,
}
WORDS = st.sampled_from(["the", "film", "is", "great", "ça", "naïve", "日本", "don't", '"quoted"', "a,b", "x"])
INSERTS = st.sampled_from([b"\t", b"\n", b"\r", b"\r\n", b'"', b"\xff", b"\xc3", b"\xed\xa0\x80", BOM, b"\x00",
                           b" ", b"\t\t", b"\x0b", "\u2028".encode(), b"label", b"5.5"])
UNKNOWN = st.sampled_from([b"2", b"-1", b"positive", b"", b"7.5", b"nan", b"neutral?", b"\xff"])


@st.composite
def valid_file(draw):
    name = draw(st.sampled_from(sorted(HEADERS)))
    task, header = TASKS[name], HEADERS[name]
    width = len(header) if header else 4
    text_idx = [header.index(c) for c in task.text_columns] if header else list(task.text_columns)
    label_idx = header.index(task.label_column) if header else task.label_column
    rows = []
    for _ in range(draw(st.integers(1, 6))):
        fields = [draw(st.sampled_from(["0", "id", "tel", "2012"])) for _ in range(width)]
        for i in text_idx:
            fields[i] = " ".join(draw(st.lists(WORDS, min_size=1, max_size=4)))
        if task.is_regression:
            fields[label_idx] = f"{draw(st.floats(0, 5)):.2f}"
        else:
            fields[label_idx] = draw(st.sampled_from(task.labels))
        rows.append("\t".join(fields).encode("utf-8"))
    lines = ([b"\t".join(h.encode() for h in header)] if header else []) + rows
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    data = eol.join(lines) + (eol if draw(st.booleans()) else b"")
    return name, data, len(rows), label_idx


@st.composite
def mutated(draw, data: bytes, label_idx: int):
    for _ in range(draw(st.integers(0, 4))):
        kind = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "tab+", "tab-", "label", "dup-line",
                                     "blank-line", "empty"]))
        lines = data.split(b"\n")
        at = draw(st.integers(0, len(data)))
        line_no = draw(st.integers(0, len(lines) - 1))
        if kind == "flip" and data:
            at = min(at, len(data) - 1)
            data = data[:at] + bytes([draw(st.integers(0, 255))]) + data[at + 1:]
        elif kind == "insert":
            data = data[:at] + draw(INSERTS) + data[at:]
        elif kind == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 8)):]
        elif kind == "truncate":
            data = data[:at]
        elif kind == "tab+":
            lines[line_no] += b"\textra"
            data = b"\n".join(lines)
        elif kind == "tab-" and b"\t" in lines[line_no]:
            lines[line_no] = lines[line_no].replace(b"\t", b" ", 1)
            data = b"\n".join(lines)
        elif kind == "label":
            fields = lines[line_no].split(b"\t")
            if label_idx < len(fields):
                fields[label_idx] = draw(UNKNOWN)
                lines[line_no] = b"\t".join(fields)
                data = b"\n".join(lines)
        elif kind == "dup-line":
            lines.insert(line_no, lines[line_no])
            data = b"\n".join(lines)
        elif kind == "blank-line":
            lines.insert(line_no, b"")
            data = b"\n".join(lines)
        elif kind == "empty":
            data = b""
        event(kind)
    return data


def data_lines(data: bytes, has_header: bool) -> int:
    """Lines the loader must account for: split on \\n only, BOM and a final newline ignored, header not counted."""
    pieces = data.removeprefix(BOM).split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    return max(0, len(pieces) - int(has_header))


def _check(load, path, data, task):
    expected = data_lines(data, task.has_header)
    for mode in ("raise", "skip"):
        try:
            ex = load(mode)
        except DataError as err:   # any other exception type fails the test
            assert str(path) in str(err), str(err)
            if err.line is not None:
                assert f"line {err.line}" in str(err)
            event(f"{mode}: DataError")
            continue
        event(f"{mode}: loaded")
        assert len(ex.texts) == len(ex.labels) == len(ex)
        if mode == "raise":
            assert not ex.bad_rows and len(ex) == expected, (len(ex), expected)
        else:
            assert len(ex) + len(ex.bad_rows) == expected, (len(ex), len(ex.bad_rows), expected)
            assert len(ex) > 0   # a file with no valid row is a DataError even when skipping
        if not task.is_regression:
            assert set(np.unique(ex.labels)) <= set(range(task.num_classes))
        else:
            assert np.all((ex.labels >= 0) & (ex.labels <= 5))


@settings(max_examples=examples(EXAMPLES), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=valid_file(), data=st.data(), split=st.sampled_from(["train", "dev"]))
def test_mutated_files_through_load_glue(tmp_path, case, data, split):
    name, original, rows, label_idx = case
    task = TASKS[name]
    content = data.draw(mutated(original, label_idx))
    folder = tmp_path / "glue" / task.folder
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / ("train.tsv" if split == "train" else task.dev_file)
    path.write_bytes(content)
    if content == original:
        assert len(load_glue(name, split, data_dir=tmp_path / "glue")) == rows
    _check(lambda mode: load_glue(name, split, data_dir=tmp_path / "glue", on_bad_rows=mode), path, content, task)


@settings(max_examples=examples(EXAMPLES), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=valid_file(), data=st.data())
def test_mutated_files_through_read_glue_tsv(tmp_path, case, data):
    name, original, rows, label_idx = case
    task = TASKS[name]
    content = data.draw(mutated(original, label_idx))
    path = tmp_path / "mutated.tsv"
    path.write_bytes(content)
    if content == original:
        assert len(read_glue_tsv(path, task, "dev")) == rows
    _check(lambda mode: read_glue_tsv(path, task, "dev", on_bad_rows=mode), path, content, task)
