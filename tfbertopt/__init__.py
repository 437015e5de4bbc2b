"""tfbertopt: make keras-hub BERT-family classifiers small and fast for phones, with measured proof.

Subpackages: `models` (loading), `kernels` (the one model walk), `data`, `train`, `pruning`, `distillation`,
`export` (verified LiteRT), `bench` (size/latency/accuracy), `recipe` + `stages` + `runner` (declarative
pipelines).

>>> import tfbertopt
>>> tfbertopt.__version__
'0.2.0'
"""

__version__ = "0.2.0"
