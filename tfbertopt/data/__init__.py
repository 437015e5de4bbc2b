"""GLUE data: task specs and strict loaders.

>>> from tfbertopt.data import get_task
>>> get_task("mrpc").metric
'f1'
"""

from tfbertopt.data.glue import (
    GLUE_DIR_ENV,
    DataError,
    Examples,
    GlueDownloadError,
    find_glue_dir,
    load_glue,
    read_glue_tsv,
)
from tfbertopt.data.tasks import TASKS, GlueTask, get_task

# pipeline (tokenization/batching) lives in pipeline.py

__all__ = [
    "GlueTask",
    "TASKS",
    "get_task",
    "DataError",
    "GlueDownloadError",
    "Examples",
    "read_glue_tsv",
    "load_glue",
    "find_glue_dir",
    "GLUE_DIR_ENV",
]
