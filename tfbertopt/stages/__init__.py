"""The recipe stages: one `Stage` object per stage (`tfbertopt.stages.base`), each in its own module with its option
schema, its checks, its run and its tags.

`STAGES` (name -> Stage, in the order the recipe reference lists them) is the one registry: `tfbertopt.recipe`
validates stage options with it, `tfbertopt.runner` runs stages through it, and `tfbertopt.docs_gen` writes the
recipe reference in docs/recipes.md from it.

>>> from tfbertopt.stages import STAGES
>>> list(STAGES)
['finetune', 'prune', 'structured_prune', 'layerdrop', 'factorize', 'trim_vocabulary', 'distill', 'qat', 'export',
 'benchmark']
>>> STAGES["prune"].tags({"m_by_n": [2, 4]})
['n:m']
"""

from tfbertopt.stages.base import Stage
from tfbertopt.stages.benchmark import BenchmarkStage
from tfbertopt.stages.distill import DistillStage
from tfbertopt.stages.export import ExportStage
from tfbertopt.stages.factorize import FactorizeStage
from tfbertopt.stages.finetune import FinetuneStage
from tfbertopt.stages.layerdrop import LayerDropStage
from tfbertopt.stages.prune import PruneStage
from tfbertopt.stages.qat import QatStage
from tfbertopt.stages.structured_prune import StructuredPruneStage
from tfbertopt.stages.trim_vocabulary import TrimVocabularyStage

STAGES: dict[str, Stage] = {stage.name: stage for stage in (
    FinetuneStage(), PruneStage(), StructuredPruneStage(), LayerDropStage(), FactorizeStage(),
    TrimVocabularyStage(), DistillStage(), QatStage(), ExportStage(), BenchmarkStage())}

__all__ = ["STAGES", "Stage"]
