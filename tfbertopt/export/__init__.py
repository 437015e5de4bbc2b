"""LiteRT export of keras-hub classifiers, its verification against Keras, and what the exported ops run in.

`op_report` lives in `tfbertopt.export.op_report` (not re-exported here, so that name stays the module).
"""

from tfbertopt.data.calibration import calibration_features, representative_dataset
from tfbertopt.export.litert import ExportError, ExportResult, export_litert, op_counts
from tfbertopt.export.op_report import OpReport
from tfbertopt.export.verified import export_verified
from tfbertopt.export.verify import VerificationError, VerificationReport, run_litert, verify_litert

__all__ = ["export_litert", "export_verified", "verify_litert", "run_litert", "op_counts", "calibration_features",
           "representative_dataset", "ExportError", "ExportResult", "OpReport", "VerificationError",
           "VerificationReport"]
