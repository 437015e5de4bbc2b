import dataclasses

import pytest

from tfbertopt.data import TASKS, GlueTask, get_task
from tfbertopt.data.glue import _TFDS_TEXT_KEYS

NAMES = ["sst2", "mnli", "qnli", "qqp", "mrpc", "rte", "cola", "stsb"]


def test_all_tasks_present_and_keyed_by_name():
    assert sorted(TASKS) == sorted(NAMES)
    for key, task in TASKS.items():
        assert task.name == key
        assert task.tfds_name == f"glue/{key}"


@pytest.mark.parametrize("alias,expected", [
    ("sst2", "sst2"), ("SST-2", "sst2"), ("sst-2", "sst2"), ("Sst_2", "sst2"),
    ("STS-B", "stsb"), ("stsb", "stsb"), ("sts_b", "stsb"), ("CoLA", "cola"),
    ("MNLI", "mnli"), ("glue/qnli", "qnli"), ("  rte ", "rte"), ("QQP", "qqp"),
])
def test_get_task_aliases(alias, expected):
    assert get_task(alias) is TASKS[expected]


def test_get_task_passes_through_task_objects():
    assert get_task(TASKS["mrpc"]) is TASKS["mrpc"]


@pytest.mark.parametrize("bad,suggestion", [("sst-3", "sst2"), ("mrcp", "mrpc"),
                                            ("mnly", "mnli")])
def test_unknown_task_message(bad, suggestion):
    with pytest.raises(ValueError) as err:
        get_task(bad)
    msg = str(err.value)
    assert repr(bad) in msg
    assert all(name in msg for name in NAMES)
    assert f"Did you mean {suggestion!r}" in msg


def test_unknown_task_without_close_match_has_no_suggestion():
    with pytest.raises(ValueError, match="Known tasks") as err:
        get_task("imagenet")
    assert "Did you mean" not in str(err.value)


def test_get_task_rejects_non_strings():
    with pytest.raises(TypeError):
        get_task(3)


@pytest.mark.parametrize("name,classes,regression,pair,metric", [
    ("sst2", 2, False, False, "accuracy"), ("cola", 2, False, False, "matthews_corrcoef"),
    ("mrpc", 2, False, True, "f1"), ("qqp", 2, False, True, "f1"),
    ("stsb", 1, True, True, "pearson"), ("mnli", 3, False, True, "accuracy"),
    ("qnli", 2, False, True, "accuracy"), ("rte", 2, False, True, "accuracy"),
])
def test_task_properties(name, classes, regression, pair, metric):
    task = TASKS[name]
    assert (task.num_classes, task.is_regression, task.is_pair, task.metric) == \
        (classes, regression, pair, metric)


def test_file_layout_fields():
    assert TASKS["cola"].has_header is False
    assert TASKS["cola"].text_columns == (3,) and TASKS["cola"].label_column == 1
    assert all(t.has_header for n, t in TASKS.items() if n != "cola")
    assert TASKS["mnli"].dev_file == "dev_matched.tsv"
    assert TASKS["mnli"].label_column == "gold_label"
    assert TASKS["mrpc"].text_columns == ("#1 String", "#2 String")
    assert TASKS["stsb"].label_column == "score" and TASKS["stsb"].labels is None
    assert {t.folder for t in TASKS.values()} == {
        "SST-2", "MNLI", "QNLI", "QQP", "MRPC", "RTE", "CoLA", "STS-B"}


def test_tasks_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        TASKS["sst2"].metric = "f1"
    assert isinstance(TASKS["sst2"], GlueTask)


def test_label_order_and_features_agree_with_tfds():
    glue = pytest.importorskip("tensorflow_datasets.text.glue")
    configs = {c.name: c for c in glue.Glue.BUILDER_CONFIGS}
    for name, task in TASKS.items():
        cfg = configs[name]
        assert tuple(cfg.text_features) == _TFDS_TEXT_KEYS[name]
        if task.is_regression:
            assert cfg.label_classes is None
            continue
        assert len(cfg.label_classes) == task.num_classes
        if name in ("mnli", "rte", "qnli"):
            assert tuple(cfg.label_classes) == task.labels
