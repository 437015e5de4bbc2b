import logging
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from helpers.profiles import examples  # pytest puts tests/ on sys.path

from tfbertopt.data import (
    TASKS,
    DataError,
    Examples,
    GlueDownloadError,
    find_glue_dir,
    get_task,
    load_glue,
    read_glue_tsv,
)

BOM = b"\xef\xbb\xbf"
REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_GLUE = REPO_ROOT.parent / "shared" / "data" / "glue"

HEADERS = {
    "sst2": ["sentence", "label"],
    "mrpc": ["Quality", "#1 ID", "#2 ID", "#1 String", "#2 String"],
    "qqp": ["id", "qid1", "qid2", "question1", "question2", "is_duplicate"],
    "qnli": ["index", "question", "sentence", "label"],
    "rte": ["index", "sentence1", "sentence2", "label"],
    "stsb": ["index", "genre", "filename", "year", "old_index", "source1",
             "source2", "sentence1", "sentence2", "score"],
    "mnli": ["index", "promptID", "pairID", "sentence1", "sentence2", "gold_label"],
    "cola": None,
}


def write(path: Path, data) -> Path:
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return path


def glue_dir(tmp_path: Path, files: dict) -> Path:
    """files: {"SST-2/dev.tsv": text} -> a GLUE-layout folder."""
    root = tmp_path / "glue"
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        write(root / rel, text)
    return root


# ------------------------------------------------------------ real-file quirks

def test_sst2_trailing_spaces_and_unbalanced_quotes(tmp_path):
    # csv with default quoting would merge rows 1-3 into one field
    text = ('sentence\tlabel\n'
            'it \'s a " charming journey . \t1\n'
            'the " worst \t0\n'
            '" ends here \t1\n')
    ex = read_glue_tsv(write(tmp_path / "dev.tsv", text), "sst2", "dev")
    assert ex.texts == [("it 's a \" charming journey .",), ('the " worst',),
                        ('" ends here',)]
    assert ex.labels.tolist() == [1, 0, 1] and ex.labels.dtype == np.int32
    assert ex.bad_rows == [] and ex.split == "dev" and ex.task.name == "sst2"


def test_mrpc_bom_header(tmp_path):
    text = ("\ufeffQuality\t#1 ID\t#2 ID\t#1 String\t#2 String\n"
            '1\t1\t2\tHe said " the pie .\t" The pie business .\n'
            "0\t3\t4\tA b .\tC d .\n")
    ex = read_glue_tsv(write(tmp_path / "train.tsv", text), "mrpc", "train")
    assert ex.texts == [('He said " the pie .', '" The pie business .'),
                        ("A b .", "C d .")]
    assert ex.labels.tolist() == [1, 0]


def test_cola_no_header_no_trailing_newline(tmp_path):
    text = "gj04\t1\t\tThe sailors rode the breeze .\nbc01\t0\t*\tHimself \" left ."
    ex = read_glue_tsv(write(tmp_path / "dev.tsv", text), "cola", "dev")
    assert ex.texts == [("The sailors rode the breeze .",), ('Himself " left .',)]
    assert ex.labels.tolist() == [1, 0]


def test_mnli_columns_selected_by_name(tmp_path):
    short = ("index\tpromptID\tpairID\tsentence1\tsentence2\tgold_label\n"
             "0\t1\t1n\tThe rights .\tEveryone likes . \tneutral\n")
    full = ("index\tpromptID\tpairID\tgenre\tsentence1_binary_parse\t"
            "sentence2_binary_parse\tsentence1_parse\tsentence2_parse\tsentence1\t"
            "sentence2\tlabel1\tlabel2\tlabel3\tlabel4\tlabel5\tgold_label\n"
            "0\t1\t1n\tgov\t( x\t( y\t(ROOT\t(ROOT\tThe rights .\tEveryone likes .\t"
            "neutral\tentailment\tneutral\tneutral\tneutral\tneutral\n")
    for name, text in (("short.tsv", short), ("full.tsv", full)):
        ex = read_glue_tsv(write(tmp_path / name, text), "mnli", "dev_matched")
        assert ex.texts == [("The rights .", "Everyone likes .")]
        assert ex.labels.tolist() == [1]


@pytest.mark.parametrize("name", ["qnli", "rte"])
def test_entailment_label_ids(tmp_path, name):
    header = "\t".join(HEADERS[name])
    text = f"{header}\n0\tQ ?\tS .\tentailment\n1\tQ2 ?\tS2 .\tnot_entailment\n"
    ex = read_glue_tsv(write(tmp_path / "x.tsv", text), name, "train")
    assert ex.labels.tolist() == [0, 1]


def test_qqp_and_stsb(tmp_path):
    qqp = ("id\tqid1\tqid2\tquestion1\tquestion2\tis_duplicate\n"
           "7\t1\t2\tWhy \"?\tHow ?\t1\n")
    ex = read_glue_tsv(write(tmp_path / "q.tsv", qqp), "qqp", "dev")
    assert ex.texts == [('Why "?', "How ?")] and ex.labels.tolist() == [1]
    sts = ("\t".join(HEADERS["stsb"]) + "\n"
           "0\tmain\tMSRvid\t2012\t0001\tnone\tnone\tA plane .\tAn air plane .\t5.000\n"
           "1\tmain\tMSRvid\t2012\t0002\tnone\tnone\tA man .\tA dog .\t0.250\n")
    ex = read_glue_tsv(write(tmp_path / "s.tsv", sts), "stsb", "train")
    assert ex.labels.dtype == np.float32
    np.testing.assert_allclose(ex.labels, [5.0, 0.25])


def test_crlf_and_unicode_separators_inside_sentences(tmp_path):
    # \x0b, \x1c and \u2028 are line breaks for str.splitlines but not for GLUE
    text = "sentence\tlabel\r\na\x0bb\x1cc\u2028d\t1\r\n\u00e9t\u00e9 \t0\r\n"
    ex = read_glue_tsv(write(tmp_path / "dev.tsv", text), "sst2", "dev")
    assert ex.texts == [("a\x0bb\x1cc\u2028d",), ("\u00e9t\u00e9",)]


# ------------------------------------------------------------------ bad rows

BAD_SST2 = [
    ("too\tmany\tcolumns\t1", "expected 2 tab-separated columns, found 4"),
    ("no label column", "expected 2 tab-separated columns, found 1"),
    ("fine sentence\t2", "unknown label '2'"),
    ("   \t1", "empty text in 'sentence'"),
    ("", "blank line"),
]


@pytest.mark.parametrize("row,reason", BAD_SST2)
def test_bad_row_raises_with_file_line_reason(tmp_path, row, reason):
    path = write(tmp_path / "train.tsv", f"sentence\tlabel\nok\t0\n{row}\nok2\t1\n")
    with pytest.raises(DataError) as err:
        read_glue_tsv(path, "sst2", "train")
    msg = str(err.value)
    assert str(path) in msg and "line 3" in msg and reason in msg
    assert err.value.line == 3 and isinstance(err.value, ValueError)


def test_non_utf8_row_is_a_row_error(tmp_path):
    data = b"sentence\tlabel\nok\t0\nbad \xff\xfe byte\t1\nfine\t1\n"
    path = write(tmp_path / "train.tsv", data)
    with pytest.raises(DataError, match=r"line 3: not valid UTF-8"):
        read_glue_tsv(path, "sst2", "train")
    ex = read_glue_tsv(path, "sst2", "train", on_bad_rows="skip")
    assert ex.texts == [("ok",), ("fine",)]
    assert [n for n, _ in ex.bad_rows] == [3]


def test_skip_mode_records_and_warns(tmp_path, caplog):
    rows = "\n".join(r for r, _ in BAD_SST2)
    path = write(tmp_path / "train.tsv", f"sentence\tlabel\ngood\t1\n{rows}\nalso good\t0\n")
    with caplog.at_level(logging.WARNING, logger="tfbertopt.data.glue"):
        ex = read_glue_tsv(path, "sst2", "train", on_bad_rows="skip")
    assert ex.texts == [("good",), ("also good",)]
    assert [n for n, _ in ex.bad_rows] == [3, 4, 5, 6, 7]
    for (_, reason), (_, expected) in zip(ex.bad_rows, BAD_SST2):
        assert expected in reason
    assert "skipped 5 bad row(s)" in caplog.text and str(path) in caplog.text


@pytest.mark.parametrize("score,reason", [("abc", "not a number"), ("5.5", r"outside \[0, 5\]"),
                                          ("-0.1", "outside"), ("nan", "outside"),
                                          ("", "not a number")])
def test_stsb_bad_scores(tmp_path, score, reason):
    header = "\t".join(HEADERS["stsb"])
    row = f"0\tg\tf\ty\to\ts\ts\tA .\tB .\t{score}"
    path = write(tmp_path / "dev.tsv", f"{header}\n{row}\n")
    with pytest.raises(DataError, match=reason):
        read_glue_tsv(path, "stsb", "dev")


@pytest.mark.parametrize("data", [b"", BOM, b"\n", b"  \n\n"])
def test_empty_file(tmp_path, data):
    path = write(tmp_path / "train.tsv", data)
    for task in ("sst2", "cola"):
        with pytest.raises(DataError, match="empty") as err:
            read_glue_tsv(path, task, "train")
        assert str(path) in str(err.value)


def test_header_only_file(tmp_path):
    path = write(tmp_path / "train.tsv", "sentence\tlabel\n")
    with pytest.raises(DataError, match="header but no data rows"):
        read_glue_tsv(path, "sst2", "train", on_bad_rows="skip")


def test_all_rows_bad_is_an_error_even_when_skipping(tmp_path):
    path = write(tmp_path / "train.tsv", "sentence\tlabel\nx\t7\ny\t8\n")
    with pytest.raises(DataError, match="no valid rows"):
        read_glue_tsv(path, "sst2", "train", on_bad_rows="skip")


def test_missing_header_column_lists_found_header(tmp_path):
    path = write(tmp_path / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\ta\tb\t0\n")
    with pytest.raises(DataError) as err:
        read_glue_tsv(path, "mrpc", "dev")
    msg = str(err.value)
    assert "'#1 String'" in msg and "'Quality'" in msg
    assert "['index', 'sentence1', 'sentence2', 'label']" in msg and "line 1" in msg


def test_splits(tmp_path):
    path = write(tmp_path / "dev.tsv", "sentence\tlabel\na\t1\n")
    for alias in ("dev", "validation", "dev_matched", "DEV"):
        assert read_glue_tsv(path, "sst2", alias).split == "dev"
    with pytest.raises(DataError, match="no public labels"):
        read_glue_tsv(path, "sst2", "test")
    with pytest.raises(DataError, match="no public labels"):
        load_glue("mnli", "test_matched", data_dir=tmp_path)
    with pytest.raises(DataError, match="unknown split"):
        read_glue_tsv(path, "sst2", "valid")


def test_bad_mode_argument(tmp_path):
    path = write(tmp_path / "dev.tsv", "sentence\tlabel\na\t1\n")
    with pytest.raises(ValueError, match="on_bad_rows"):
        read_glue_tsv(path, "sst2", "dev", on_bad_rows="ignore")


# ------------------------------------------------------------------ Examples

def make_examples(n=10):
    return Examples(get_task("sst2"), "train", [(f"s{i}",) for i in range(n)],
                    np.arange(n, dtype=np.int32) % 2, "mem", [(99, "x")])


def test_examples_take_and_subset():
    ex = make_examples()
    head = ex.take(3)
    assert head.texts == [("s0",), ("s1",), ("s2",)] and head.labels.tolist() == [0, 1, 0]
    assert len(ex.take(100)) == 10 and len(ex.take(0)) == 0
    sub = ex.shuffled_subset(5, seed=1)
    assert len(sub) == 5 and sub.texts == ex.shuffled_subset(5, seed=1).texts
    for text, label in zip(sub.texts, sub.labels):
        assert int(text[0][1:]) % 2 == label
    assert sorted(ex.shuffled_subset(10, seed=3).texts) == sorted(ex.texts)
    assert sub.bad_rows == ex.bad_rows and len(ex) == 10
    with pytest.raises(ValueError):
        ex.take(-1)


def test_examples_repr_and_validation():
    assert "n=10" in repr(make_examples()) and "s3" not in repr(make_examples())
    with pytest.raises(ValueError, match="2 texts but 1 labels"):
        Examples(get_task("sst2"), "dev", [("a",), ("b",)], np.zeros(1, np.int32), "m", [])


# ---------------------------------------------------------- load_glue, local

def test_load_glue_from_data_dir(tmp_path):
    root = glue_dir(tmp_path, {
        "SST-2/train.tsv": "sentence\tlabel\na\t1\nb\t0\nc\t1\n",
        "MNLI/dev_matched.tsv": "index\tsentence1\tsentence2\tgold_label\n"
                                "0\tp\th\tcontradiction\n",
    })
    ex = load_glue("SST-2", data_dir=root)
    assert len(ex) == 3 and ex.source.endswith("train.tsv")
    assert len(load_glue("sst2", data_dir=root, max_examples=2)) == 2
    mnli = load_glue("mnli", "validation", data_dir=str(root))
    assert mnli.labels.tolist() == [2] and mnli.split == "dev"


def test_load_glue_missing_file(tmp_path):
    root = glue_dir(tmp_path, {"SST-2/train.tsv": "sentence\tlabel\na\t1\n"})
    with pytest.raises(FileNotFoundError) as err:
        load_glue("rte", "dev", data_dir=root)
    assert str(root / "RTE" / "dev.tsv") in str(err.value)
    assert "RTE/dev.tsv" in str(err.value)


def test_find_glue_dir(tmp_path, monkeypatch):
    monkeypatch.delenv("TFBERTOPT_GLUE_DIR", raising=False)
    assert find_glue_dir() is None
    assert find_glue_dir(tmp_path) == tmp_path
    monkeypatch.setenv("TFBERTOPT_GLUE_DIR", str(tmp_path))
    assert find_glue_dir() == tmp_path
    with pytest.raises(FileNotFoundError, match="data_dir"):
        find_glue_dir(tmp_path / "nope")
    monkeypatch.setenv("TFBERTOPT_GLUE_DIR", str(tmp_path / "nope"))
    with pytest.raises(FileNotFoundError, match="TFBERTOPT_GLUE_DIR"):
        find_glue_dir()


def test_load_glue_uses_env_dir(tmp_path, monkeypatch):
    root = glue_dir(tmp_path, {"CoLA/dev.tsv": "s\t0\t*\tBad .\ns\t1\t\tGood ."})
    monkeypatch.setenv("TFBERTOPT_GLUE_DIR", str(root))
    assert load_glue("cola", "dev").labels.tolist() == [0, 1]


# ----------------------------------------------------------- load_glue, tfds

@pytest.fixture
def fake_tfds(monkeypatch):
    """Replace tfds.load with a fake serving small in-memory datasets."""
    tfds = pytest.importorskip("tensorflow_datasets")
    tf = pytest.importorskip("tensorflow")
    monkeypatch.delenv("TFBERTOPT_GLUE_DIR", raising=False)
    calls, data = [], {}

    def fake_load(name, split, **kwargs):
        calls.append((name, split))
        if name not in data:
            raise ConnectionError("no network (fake)")
        return tf.data.Dataset.from_tensor_slices(data[name])

    monkeypatch.setattr(tfds, "load", fake_load)
    return calls, data


def test_tfds_conversion_single_sentence(fake_tfds):
    calls, data = fake_tfds
    data["glue/sst2"] = {"sentence": [b"a good film ", "caf\u00e9 \" .".encode()],
                         "label": [1, 0], "idx": [0, 1]}
    ex = load_glue("sst2", "train")
    assert calls == [("glue/sst2", "train")]
    assert ex.texts == [("a good film",), ('caf\u00e9 " .',)]
    assert ex.labels.tolist() == [1, 0] and ex.labels.dtype == np.int32
    assert ex.source == "tfds:glue/sst2" and ex.bad_rows == []


def test_tfds_conversion_pairs_mnli_split_and_max_examples(fake_tfds):
    calls, data = fake_tfds
    data["glue/mnli"] = {"premise": [b"p1", b"p2", b"p3"],
                         "hypothesis": [b"h1", b"h2", b"h3"],
                         "label": [2, 0, 1], "idx": [0, 1, 2]}
    ex = load_glue("mnli", "dev", max_examples=2)
    assert calls == [("glue/mnli", "validation_matched")]
    assert ex.texts == [("p1", "h1"), ("p2", "h2")] and ex.labels.tolist() == [2, 0]


def test_tfds_conversion_stsb_and_bad_labels(fake_tfds):
    calls, data = fake_tfds
    data["glue/stsb"] = {"sentence1": [b"a", b"b"], "sentence2": [b"c", b"d"],
                         "label": np.array([4.5, 0.0], np.float32), "idx": [0, 1]}
    ex = load_glue("stsb", "validation")
    assert calls[-1] == ("glue/stsb", "validation")
    np.testing.assert_allclose(ex.labels, [4.5, 0.0])
    data["glue/rte"] = {"sentence1": [b"a", b"b"], "sentence2": [b"c", b""],
                        "label": [-1, 1], "idx": [0, 1]}
    with pytest.raises(DataError, match=r"tfds:glue/rte, example index 0: label -1"):
        load_glue("rte", "train")
    data["glue/rte"]["label"] = [0, 1]
    with pytest.raises(DataError, match="empty text in 'sentence2'"):
        load_glue("rte", "train")
    data["glue/rte"]["sentence1"] = [b"a", b"\xff"]
    skipped = load_glue("rte", "train", on_bad_rows="skip")
    assert len(skipped) == 1 and [i for i, _ in skipped.bad_rows] == [1]


def test_tfds_missing_feature_is_data_error(fake_tfds):
    _, data = fake_tfds
    data["glue/qqp"] = {"sentence1": [b"a"], "label": [0]}
    with pytest.raises(DataError, match="no feature 'question1'"):
        load_glue("qqp", "train")


def test_tfds_failure_message(fake_tfds):
    with pytest.raises(GlueDownloadError) as err:
        load_glue("cola", "train")
    msg = str(err.value)
    assert "data_dir=" in msg and "TFBERTOPT_GLUE_DIR" in msg
    assert "no network (fake)" in msg and "glue/cola" in msg
    assert isinstance(err.value, RuntimeError)
    assert isinstance(err.value.__cause__, ConnectionError)


# ------------------------------------------------------------- fuzzed files

FUZZ_TASKS = ["sst2", "cola", "mrpc", "stsb", "mnli", "qnli"]
TEXT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\t\n"),
               min_size=1, max_size=12).filter(lambda s: s.strip())
FILLER = st.text(st.sampled_from('ab01 "\'*#.'), max_size=4)
INVALID_UTF8 = st.sampled_from([b"\xff", b"\xc3(", b"\xed\xa0\x80", b"\xe2\x82",
                                b"\x80abc", b"\xf0\x28\x8c\xbc"])
BAD_LABELS = st.sampled_from(["2", "-1", "positive", "", " ", "1.0", "yes", "neutral?"])
BAD_SCORES = st.sampled_from(["abc", "", "5.01", "-0.5", "nan", "inf", "1,5", "--"])


def _layout(task):
    """(header or None, width, text column indices, label column index)."""
    header = HEADERS[task.name]
    if header is None:
        return None, 4, list(task.text_columns), task.label_column
    return (header, len(header), [header.index(c) for c in task.text_columns],
            header.index(task.label_column))


@st.composite
def valid_row(draw, task):
    _, width, text_idx, label_idx = _layout(task)
    fields = [draw(FILLER) for _ in range(width)]
    texts = [draw(TEXT) for _ in text_idx]
    for i, t in zip(text_idx, texts):
        fields[i] = t
    if task.is_regression:
        label = draw(st.floats(0, 5, allow_nan=False))
        fields[label_idx] = f"{label:.3f}"
        label = float(f"{label:.3f}")
    else:
        label = draw(st.integers(0, task.num_classes - 1))
        fields[label_idx] = draw(st.sampled_from(["", " "])) + task.labels[label]
    row = "\t".join(fields).encode("utf-8")
    return row, (tuple(t.strip() for t in texts), label)


@st.composite
def bad_row(draw, task):
    _, width, text_idx, label_idx = _layout(task)
    row, _ = draw(valid_row(task))
    fields = row.split(b"\t")
    kind = draw(st.sampled_from(["truncate", "extra", "label", "empty", "bytes",
                                 "blank", "garbage"]))
    if kind == "truncate":  # cut before the last tab: always too few columns
        row = row[:draw(st.integers(0, row.rfind(b"\t")))]
    elif kind == "extra":
        row += b"\t" + draw(FILLER).encode()
    elif kind == "label":
        fields[label_idx] = draw(BAD_SCORES if task.is_regression else BAD_LABELS).encode()
        row = b"\t".join(fields)
    elif kind == "empty":
        fields[draw(st.sampled_from(text_idx))] = draw(st.sampled_from(["", " ", "\u3000 "])).encode()
        row = b"\t".join(fields)
    elif kind == "bytes":
        i = draw(st.sampled_from(text_idx))
        fields[i] = draw(INVALID_UTF8) + fields[i]
        row = b"\t".join(fields)
    elif kind == "blank":
        row = b""
    else:  # one column only (no tab, no newline)
        row = draw(st.binary(max_size=20)).replace(b"\t", b"").replace(b"\n", b"")
    return row, None


@st.composite
def fuzz_file(draw):
    task = TASKS[draw(st.sampled_from(FUZZ_TASKS))]
    rows = draw(st.lists(st.one_of(valid_row(task), bad_row(task)), max_size=8))
    eol = draw(st.sampled_from([b"\n", b"\r\n"]))
    header, *_ = _layout(task)
    lines = ([] if header is None else ["\t".join(header).encode()]) + [r for r, _ in rows]
    data = eol.join(lines)
    # a final newline is optional, except after a blank last row (it would vanish)
    if lines and (draw(st.booleans()) or rows and rows[-1][0] == b""):
        data += eol
    if draw(st.booleans()):
        data = BOM + data
    return task, data, [expected for _, expected in rows], 1 if header else 0


@settings(max_examples=examples(150), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=fuzz_file())
def test_fuzzed_files(tmp_path, case):
    task, data, expected, offset = case
    path = write(tmp_path / "fuzz.tsv", data)
    valid = [(i + 1 + offset, e) for i, e in enumerate(expected) if e is not None]
    bad_lines = [i + 1 + offset for i, e in enumerate(expected) if e is None]

    event(f"{len(valid)} valid / {len(bad_lines)} bad rows" if len(valid) < 2
          else f">=2 valid / {'some' if bad_lines else 'no'} bad rows")
    try:
        ex = read_glue_tsv(path, task, "train", on_bad_rows="skip")
    except DataError as err:
        assert not valid, "DataError although valid rows exist"
        assert str(path) in str(err)
    else:
        assert len(ex) + len(ex.bad_rows) == len(expected)
        assert [n for n, _ in ex.bad_rows] == bad_lines
        assert ex.texts == [e[0] for _, e in valid]
        np.testing.assert_allclose(ex.labels, [e[1] for _, e in valid], rtol=1e-6)

    try:
        ex = read_glue_tsv(path, task, "train", on_bad_rows="raise")
    except DataError as err:
        assert bad_lines or not valid
        assert str(path) in str(err)
        if bad_lines and valid:
            assert err.line == bad_lines[0] and f"line {bad_lines[0]}" in str(err)
    else:
        assert not bad_lines and len(ex) == len(expected)


def _data_lines(data: bytes, has_header: bool) -> int:
    pieces = data.removeprefix(BOM).split(b"\n")
    if pieces[-1] == b"":
        pieces.pop()
    return len(pieces) - int(has_header)


@settings(max_examples=examples(150), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(name=st.sampled_from(FUZZ_TASKS), with_header=st.booleans(),
       body=st.binary(max_size=200), cut=st.integers(0, 400), data=st.data())
def test_random_bytes_and_truncation_never_crash(tmp_path, name, with_header, body, cut,
                                                  data):
    task = TASKS[name]
    valid = data.draw(st.lists(valid_row(task), max_size=5))
    header = HEADERS[name]
    prefix = b"\t".join(h.encode() for h in header) + b"\n" if header and with_header else b""
    content = (prefix + b"\n".join(r for r, _ in valid) + b"\n" + body)[:cut]
    path = write(tmp_path / "raw.tsv", content)
    for mode in ("skip", "raise"):
        try:
            ex = read_glue_tsv(path, task, "dev", on_bad_rows=mode)
        except DataError:
            event(f"{mode}: DataError")
            continue
        event(f"{mode}: loaded")
        assert len(ex) + len(ex.bad_rows) == _data_lines(content, task.has_header)
        assert mode == "skip" or not ex.bad_rows


# ------------------------------------------------------------ real GLUE files

OFFICIAL_COUNTS = {
    ("sst2", "train"): 67349, ("sst2", "dev"): 872, ("mnli", "dev"): 9815,
    ("cola", "train"): 8551, ("cola", "dev"): 1043, ("mrpc", "train"): 3668,
    ("mrpc", "dev"): 408, ("stsb", "train"): 5749, ("stsb", "dev"): 1500,
    ("qnli", "dev"): 5463, ("rte", "train"): 2490,
}


@pytest.mark.shared_data
def test_real_glue_files_official_counts():
    if not SHARED_GLUE.is_dir():
        pytest.skip(f"{SHARED_GLUE} not present")
    loaded = {}
    for name, task in TASKS.items():
        for split in ("train", "dev"):
            path = SHARED_GLUE / task.folder / ("train.tsv" if split == "train" else task.dev_file)
            if not path.is_file():
                continue
            ex = load_glue(name, split, data_dir=SHARED_GLUE)
            assert ex.bad_rows == [], (name, split, ex.bad_rows[:3])
            loaded[name, split] = len(ex)
            if not task.is_regression:
                assert set(np.unique(ex.labels)) == set(range(task.num_classes))
    assert loaded, "no GLUE files found"
    for key, count in loaded.items():
        if key in OFFICIAL_COUNTS:
            assert count == OFFICIAL_COUNTS[key], key
