"""Multi-worker training: the cluster from `TF_CONFIG`, the strategy a recipe's `distribute:` names, and who writes.

Every worker runs the same program with its own `TF_CONFIG`; `MultiWorkerMirroredStrategy` keeps the variables
identical on all of them (gradients are all-reduced each step). The chief (`chief:0`, or `worker:0` when the cluster
has no chief job) writes the outputs; every other worker writes its copies into a private scratch folder
(`local_path`), because saving reads variables, and some reads (sync-on-read variables) are collective: every
worker must save for the chief's save to finish. TensorFlow only: tf.distribute has no other backend.

Example:

>>> from tfbertopt.distribute import read_cluster
>>> config = '{"cluster": {"worker": ["h0:2222", "h1:2222"]}, "task": {"type": "worker", "index": 1}}'
>>> cluster = read_cluster(config)
>>> cluster.num_workers, cluster.task, cluster.chief, cluster.is_chief
(2, ('worker', 1), ('worker', 0), False)
>>> read_cluster('{"cluster": {"worker": ["h0"]}, "task": {"type": "worker", "index": 0}}')
Traceback (most recent call last):
...
tfbertopt.distribute.ClusterError: TF_CONFIG: bad cluster spec: cluster.worker[0] is 'h0', expected 'host:port'
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import tempfile

from tfbertopt.data.pipeline import check_shardable

STRATEGIES = ("none", "mirrored", "multi_worker")
JOBS = ("chief", "worker")      # the jobs MultiWorkerMirroredStrategy runs (no parameter servers, no evaluator)


class ClusterError(ValueError):
    """A `TF_CONFIG` that cannot run multi-worker training; the message names the problem in one line (a ValueError
    like the recipe's RecipeError, which lives with the stages this module's users import)."""

    __module__ = "tfbertopt.distribute"


@dataclasses.dataclass(frozen=True)
class Cluster:
    """A checked `TF_CONFIG`: the jobs' addresses, this process's task and the chief's."""

    jobs: dict
    task: tuple

    @property
    def chief(self) -> tuple:
        return ("chief", 0) if self.jobs.get("chief") else ("worker", 0)

    @property
    def is_chief(self) -> bool:
        return self.task == self.chief

    @property
    def num_workers(self) -> int:
        return sum(len(addresses) for addresses in self.jobs.values())


def read_cluster(config: str | None = None) -> Cluster:
    """The cluster of `config` (a TF_CONFIG JSON string; default: the `TF_CONFIG` environment variable), checked:
    ClusterError for a missing or malformed TF_CONFIG, a bad cluster spec, a missing chief or a task not in it."""
    config = os.environ.get("TF_CONFIG") if config is None else config
    if not config:
        raise ClusterError("TF_CONFIG: not set; multi-worker training needs it on every worker, e.g. "
                           '{"cluster": {"worker": ["host0:2222", "host1:2222"]}, "task": {"type": "worker", '
                           '"index": 0}}')
    try:
        parsed = json.loads(config)
    except json.JSONDecodeError as e:
        raise ClusterError(f"TF_CONFIG: not valid JSON ({e})") from None
    cluster = parsed.get("cluster") if isinstance(parsed, dict) else None
    if not isinstance(cluster, dict) or not cluster:
        raise ClusterError("TF_CONFIG: bad cluster spec: no 'cluster' mapping of jobs to address lists")
    for job, addresses in cluster.items():
        if job not in JOBS:
            raise ClusterError(f"TF_CONFIG: bad cluster spec: job '{job}' is not one MultiWorkerMirroredStrategy "
                               f"runs ({', '.join(JOBS)})")
        if not isinstance(addresses, list):
            raise ClusterError(f"TF_CONFIG: bad cluster spec: cluster.{job} must be a list of 'host:port'")
        for i, address in enumerate(addresses):
            host, _, port = str(address).rpartition(":") if isinstance(address, str) else ("", "", "")
            if not host or not port.isdigit():
                raise ClusterError(f"TF_CONFIG: bad cluster spec: cluster.{job}[{i}] is {address!r}, expected "
                                   f"'host:port'")
    if len(cluster.get("chief", [])) > 1:
        raise ClusterError(f"TF_CONFIG: bad cluster spec: {len(cluster['chief'])} chiefs; a cluster has one")
    if not cluster.get("chief") and not cluster.get("worker"):
        raise ClusterError("TF_CONFIG: missing chief: the cluster lists no chief and no worker:0 to act as one")
    task = parsed.get("task")
    if not isinstance(task, dict) or "type" not in task:
        raise ClusterError("TF_CONFIG: no 'task' ({'type': 'worker', 'index': N}): which worker is this process?")
    kind, index = task["type"], task.get("index", 0)
    if kind == "chief" and not cluster.get("chief"):
        raise ClusterError("TF_CONFIG: missing chief: the task is 'chief' but the cluster has no chief job")
    if kind not in cluster or isinstance(index, bool) or not isinstance(index, int) \
            or not 0 <= index < len(cluster[kind]):
        raise ClusterError(f"TF_CONFIG: task {kind}:{index} is not in the cluster "
                           f"({ {job: len(a) for job, a in cluster.items()} })")
    return Cluster({job: list(a) for job, a in cluster.items()}, (kind, index))


_STRATEGY = {}


def make_strategy(kind: str):
    """The strategy named `kind` (one of STRATEGIES; None for "none"), made once per process. Make it before any
    other TensorFlow op runs: MultiWorkerMirroredStrategy configures the process's collectives when it starts."""
    if kind not in STRATEGIES:
        raise ValueError(f"distribute.strategy: '{kind}' is not one of {', '.join(STRATEGIES)}")
    if kind == "none":
        return None
    if kind not in _STRATEGY:
        import tensorflow as tf

        if kind == "multi_worker":
            read_cluster()
            _STRATEGY[kind] = tf.distribute.MultiWorkerMirroredStrategy()
        else:
            _STRATEGY[kind] = tf.distribute.MirroredStrategy()
    return _STRATEGY[kind]


def current_strategy():
    """The strategy whose scope is active (TensorFlow's default strategy outside any scope)."""
    import tensorflow as tf

    return tf.distribute.get_strategy()


def is_multi_worker(strategy=None) -> bool:
    strategy = strategy or current_strategy()
    return bool(getattr(strategy.extended, "_in_multi_worker_mode", lambda: False)())


def is_chief(strategy=None) -> bool:
    """Whether this process writes outputs: always outside multi-worker training."""
    strategy = strategy or current_strategy()
    return not is_multi_worker(strategy) or strategy.extended.should_checkpoint


def distribute_batches(dataset, examples: int, batch_size: int, strategy=None):
    """The training `dataset` of `examples` in global batches of `batch_size` (`make_dataset`), set up for the
    strategy.

    Under multi-worker training tf.data cuts every global batch into one slice per replica and each worker keeps its
    replicas' slices (`AutoShardPolicy.DATA` on the batched dataset: the batches come from a Python generator, so
    there are no files to shard by); ShardingError when the batches do not split evenly."""
    strategy = strategy or current_strategy()
    if is_multi_worker(strategy):
        import tensorflow as tf

        check_shardable(examples, batch_size, strategy.num_replicas_in_sync)
        options = tf.data.Options()
        options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
        dataset = dataset.with_options(options)
    return dataset


@contextlib.contextmanager
def multi_worker_fit(model):
    """Lets `model.fit` run under MultiWorkerMirroredStrategy, around two Keras 3 faults:

    - before the first step Keras all-reduces the first batch to build a model made in a strategy scope, and this
      strategy cannot reduce a nested batch (a dict of token tensors): with the model's strategy unset Keras uses
      the scope's strategy and builds when the step is traced (build the training state first:
      `tfbertopt.train.build_training_state`);
    - Keras reduces each step's logs across workers along axis 0, which scalar logs do not have
      (tensorflow/tensorflow#72388): scalars are reduced without an axis while the fit runs.

    Does nothing off multi-worker."""
    strategy = getattr(model, "_distribute_strategy", None)
    if strategy is None or not is_multi_worker(strategy):
        yield model
        return
    from keras.src.backend.tensorflow import trainer

    reduce_per_replica = trainer.reduce_per_replica

    def reduce_scalars(values, strategy, reduction):
        if reduction == "auto" and is_multi_worker(strategy):
            return trainer.tree.map_structure(
                lambda v: strategy.reduce("MEAN", v, axis=None if v.shape.rank == 0 else 0), values)
        return reduce_per_replica(values, strategy, reduction)

    model._distribute_strategy, trainer.reduce_per_replica = None, reduce_scalars
    try:
        yield model
    finally:
        model._distribute_strategy, trainer.reduce_per_replica = strategy, reduce_per_replica


def replicas_sum(x):
    """(sum of `x` over every replica, number of replicas) in a replica of a multi-replica TensorFlow strategy;
    `(x, 1)` otherwise and on other backends."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return x, 1
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return x, 1
    return context.all_reduce(tf.distribute.ReduceOp.SUM, x), context.num_replicas_in_sync


def global_extremes(lo, hi):
    """(min of `lo`, max of `hi`) over every replica when called in a replica of a multi-replica TensorFlow
    strategy (tf.distribute reduces only by sum and mean, so the scalars are gathered); unchanged otherwise, and on
    other backends."""
    import keras

    if keras.backend.backend() != "tensorflow":
        return lo, hi
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return lo, hi
    both = context.all_gather(tf.stack([-lo, hi])[None], axis=0)
    extremes = tf.reduce_max(both, axis=0)
    return -extremes[0], extremes[1]


_SCRATCH = []


def _scratch() -> str:
    if not _SCRATCH:
        _SCRATCH.append(tempfile.mkdtemp(prefix="tfbertopt-worker-"))
    return _SCRATCH[0]


def local_path(path, strategy=None) -> str:
    """Where this process writes what belongs at `path`: `path` itself on the chief, the same path under a private
    scratch folder on the other workers."""
    if is_chief(strategy):
        return str(path)
    path = os.path.abspath(str(path))
    if path.startswith(_scratch() + os.sep):
        return path
    return os.path.join(_scratch(), path.lstrip(os.sep))


def chief_path(path) -> str:
    """The chief's `path` for a path `local_path` gave (inverse; unchanged on the chief): what every worker reads."""
    if _SCRATCH and os.path.abspath(str(path)).startswith(_SCRATCH[0] + os.sep):
        return os.sep + os.path.relpath(os.path.abspath(str(path)), _SCRATCH[0])
    return str(path)


def replace_atomically(write, path: str) -> None:
    """Calls `write(tmp)` for a temporary name beside `path`, then renames it to `path`: a process killed while
    writing leaves the previous file (or none), never half of one. The temporary name keeps the extension."""
    folder, name = os.path.split(path)
    stem, dot, ext = name.partition(".")    # the whole extension: Keras checks for ".weights.h5"
    tmp = os.path.join(folder, f"{stem}.partial-{os.getpid()}{dot}{ext}")
    write(tmp)
    os.replace(tmp, path)


def write_json_atomically(obj, path: str, indent: int | None = None) -> None:
    """`obj` as JSON at `path`, through `replace_atomically`."""
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=indent)

    replace_atomically(write, path)
