"""LiteRT export of keras-hub classifiers and its verification against Keras."""

from tfbertopt.export.litert import ExportError, ExportResult, export_litert, op_counts
from tfbertopt.export.verified import export_verified
from tfbertopt.export.verify import VerificationError, VerificationReport, run_litert, verify_litert

__all__ = ["export_litert", "export_verified", "verify_litert", "run_litert", "op_counts", "ExportError",
           "ExportResult", "VerificationError", "VerificationReport"]
