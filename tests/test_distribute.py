"""Multi-worker configuration: TF_CONFIG checks, the recipe's `distribute:` option and the sharding check, each
failing with one line that names the problem (the training itself: tests/distributed/test_multiworker.py)."""

import json

import pytest

from tfbertopt.data.pipeline import ShardingError, check_shardable
from tfbertopt.distribute import ClusterError, read_cluster
from tfbertopt.recipe import RecipeError, parse_recipe


def _config(cluster=None, task=None):
    return json.dumps({"cluster": cluster if cluster is not None else {"worker": ["a:1", "b:2"]},
                       "task": task if task is not None else {"type": "worker", "index": 0}})


@pytest.mark.parametrize("config, message", [
    ("", "TF_CONFIG: not set"),
    ("{cluster", "TF_CONFIG: not valid JSON"),
    (json.dumps({"task": {"type": "worker", "index": 0}}), "bad cluster spec: no 'cluster' mapping"),
    (_config({"worker": ["a:1", "b"]}), "bad cluster spec: cluster.worker[1] is 'b', expected 'host:port'"),
    (_config({"worker": "a:1"}), "bad cluster spec: cluster.worker must be a list"),
    (_config({"worker": ["a:1"], "ps": ["c:3"]}), "bad cluster spec: job 'ps' is not one"),
    (_config({"chief": ["a:1", "b:2"], "worker": ["c:3"]}), "bad cluster spec: 2 chiefs"),
    (_config({"chief": [], "worker": []}), "missing chief: the cluster lists no chief and no worker:0"),
    (_config(task={"type": "chief", "index": 0}), "missing chief: the task is 'chief' but the cluster has no chief"),
    (_config(task={"type": "worker", "index": 2}), "task worker:2 is not in the cluster"),
    (json.dumps({"cluster": {"worker": ["a:1"]}}), "no 'task'"),
])
def test_bad_tf_config_is_named_in_one_line(config, message):
    with pytest.raises(ClusterError) as error:
        read_cluster(config)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_the_chief_is_chief_0_or_else_worker_0():
    assert read_cluster(_config()).is_chief
    with_chief = read_cluster(_config({"chief": ["c:1"], "worker": ["a:1"]}, {"type": "worker", "index": 0}))
    assert with_chief.chief == ("chief", 0) and not with_chief.is_chief and with_chief.num_workers == 2


def test_recipe_distribute_option():
    raw = {"name": "t", "model": "demo", "task": "sst2", "stages": ["finetune"]}
    assert parse_recipe(raw)["distribute"] == {"strategy": "none"}
    assert parse_recipe({**raw, "distribute": {"strategy": "multi_worker"}})["distribute"]["strategy"] == "multi_worker"
    with pytest.raises(RecipeError, match="distribute.strategy: 'tpu' is not one of none, mirrored, multi_worker"):
        parse_recipe({**raw, "distribute": {"strategy": "tpu"}})
    with pytest.raises(RecipeError, match="distribute: unknown key 'worker'"):
        parse_recipe({**raw, "distribute": {"worker": 2}})


def test_a_multi_worker_recipe_without_tf_config_fails_in_one_line(tmp_path, capsys, monkeypatch):
    from tfbertopt.cli import main

    monkeypatch.delenv("TF_CONFIG", raising=False)
    path = tmp_path / "r.yaml"
    path.write_text(json.dumps({"name": "t", "model": "demo", "task": "sst2", "data": {"source": "demo"},
                                "distribute": {"strategy": "multi_worker"}, "stages": ["finetune"]}))
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tfbertopt: error: TF_CONFIG: not set")


@pytest.mark.parametrize("n, batch, workers, message", [
    (96, 16, 3, "16 is not a multiple of 3"),
    (100, 12, 3, "the last batch has 4 examples, not a multiple of 3"),
    (2, 2, 3, "2 is not a multiple of 3"),
])
def test_a_dataset_that_cannot_be_sharded_is_named(n, batch, workers, message):
    with pytest.raises(ShardingError, match=message):
        check_shardable(n, batch, workers)
    check_shardable(96, 12, 3)
