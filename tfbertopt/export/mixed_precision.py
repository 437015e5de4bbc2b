"""Q-BERT-style mixed precision for the full-integer LiteRT export: measure which ops int8 hurts, keep those float.

Full-integer PTQ of a BERT (`export_litert(..., "int8")`) can drift from Keras (MiniLM-L6 on SST-2, measured:
benchmarks/results/sst2_quantization.json and sst2_mixed_precision.json). This module finds the op groups
responsible and re-quantizes with them left in float, under a budget. LiteRT (TF 2.21) has no per-op "higher
precision" other than float: `mlir_quantize` (what
`tf.lite.experimental.QuantizationDebugger.get_nondebug_quantized_model` calls) takes `denylisted_nodes` (output
tensor names) and `denylisted_ops` (op names such as "SOFTMAX"), and the denylisted ops run in float between
DEQUANTIZE/QUANTIZE; their weights stay float32. (Whole-model int16 activations: `export_litert(..., "16x8")`.)

Steps, each reusable (`MixedPrecision` calibrates once; every candidate model is a cheap re-quantization of the
calibrated flatbuffer):

1. `MixedPrecision(model, calibration, sequence_length, holdout=...)`: converts and calibrates once, and lists the
   quantizable candidates (`nodes`), each named by its output tensor and grouped by encoder layer and op kind
   (`classify_tensor`: "layer_3/softmax", "layer_0/attention_residual", "embeddings/layernorm", "head/pooler", ...).
2. Sensitivity. `debugger_statistics()` runs TensorFlow's `QuantizationDebugger` (NumericVerify ops: each int8 op
   compared with its float twin on the same dequantized inputs) over the calibration set and reports per tensor
   RMSE/scale (0.29 is pure rounding noise; far above means clipping/outliers), RMSE and max error.
   `sensitivity()` measures, per group, what Q-BERT measures per layer: the int8 model with only that group kept
   float ("everything except group G quantized") on the held-out set, against the Keras logits: mean |logit
   error| and label agreement, and the gain over plain int8.
3. `select(max_float_ops=... | min_agreement=... | max_logit_error=...)`: greedy by gain; an op budget packs the
   most useful groups that fit, a target adds groups one at a time (re-evaluating the real re-quantized model) until
   met. The `Selection` says which nodes stayed float, why, the resulting agreement, error and size.
4. `export(path, selection)`: writes the .tflite (builtin ops only, same signature as every export: int32
   token_ids/padding_mask[/segment_ids] in, float logits/probabilities out) and returns a `MixedPrecisionResult`
   with the `ExportResult` (quantization "mixed", op_report) and the selection.

`export_mixed_precision(model, path, ..., <budget>)` does all of it in one call.

Example:

>>> import os, tempfile
>>> from tfbertopt.data.demo import demo_examples, demo_vocabulary
>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.export.mixed_precision import MixedPrecision, classify_tensor
>>> classify_tensor("bert/transformer_layer_2_1/self_attention_layer_1/softmax_1/Softmax", "SOFTMAX")
('layer_2', 'softmax')
>>> clf = tiny_bert_classifier(demo_vocabulary(), num_layers=1, hidden_dim=16, num_heads=2, intermediate_dim=32,
...                            sequence_length=16)
>>> mp = MixedPrecision(clf, demo_examples("train", 16), sequence_length=16, calibration_steps=8)
>>> selection = mp.select(denylisted_ops=["SOFTMAX"], max_float_ops=0)
>>> result = mp.export(os.path.join(tempfile.mkdtemp(), "m_mixed.tflite"), selection)
>>> result.export.op_report.counts["SOFTMAX"]["float32"] >= 1
True
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import re

import numpy as np

from tfbertopt.data.calibration import calibration_features, representative_dataset
from tfbertopt.data.pipeline import model_input_names, without_preprocessor
from tfbertopt.evaluation import predict_logits
from tfbertopt.export.litert import ExportError, ExportResult, convert_saved_model, op_counts, saved_model
from tfbertopt.export.op_report import op_report

logger = logging.getLogger(__name__)

# Ops whose precision the quantizer decides and that compute something (shape ops follow their neighbours).
CANDIDATE_OPS = ("FULLY_CONNECTED", "BATCH_MATMUL", "SOFTMAX", "GELU", "ADD", "MUL", "MEAN", "SQUARED_DIFFERENCE",
                 "RSQRT", "SUB", "TANH", "GATHER", "LOGISTIC", "RELU", "SUM")
# Data-movement ops: kept in the group of the op that produces their input, so that a float group does not leave
# an int8 RESHAPE/TRANSPOSE between two float ops (a pointless QUANTIZE/DEQUANTIZE round trip and rounding error).
FOLLOWER_OPS = ("RESHAPE", "TRANSPOSE", "SELECT_V2", "STRIDED_SLICE", "CONCATENATION", "SQUEEZE", "EXPAND_DIMS",
                "PACK", "UNPACK", "SLICE", "GATHER_ND")
GRANULARITIES = ("layer_kind", "kind", "layer", "node")

_LAYER = re.compile(r"transformer_layer_(\d+)")


def classify_tensor(tensor_name: str, op_name: str = "") -> tuple[str, str]:
    """(layer, kind) of an op of a keras-hub BERT-family graph from its output tensor name.

    layer: "embeddings", "layer_<i>" (encoder block i), "head" (pooler/classifier) or "other". kind: for encoder
    blocks one of attention_qkv, attention_scores (Q.K^T), softmax, attention_context (P.V), attention_output,
    attention_residual, attention_layernorm, ffn_intermediate, gelu, ffn_output, ffn_residual, ffn_layernorm.
    """
    name = tensor_name.split(";")[0]
    layer = _LAYER.search(name)
    if layer:
        where = f"layer_{int(layer.group(1))}"
        rest = name[layer.end():]
        if re.search(r"/self_attention_layer_norm", rest):
            return where, "attention_layernorm"
        if re.search(r"/feedforward_layer_norm", rest):
            return where, "ffn_layernorm"
        if re.search(r"/(query|key|value)(_\d+)?/", rest):
            return where, "attention_qkv"
        if re.search(r"/attention_output", rest):
            return where, "attention_output"
        if re.search(r"/softmax", rest, re.IGNORECASE) or op_name == "SOFTMAX":
            return where, "softmax"
        if re.search(r"/self_attention_layer(_\d+)?/(MatMul_1|einsum_1)", rest):
            return where, "attention_context"
        if re.search(r"/self_attention_layer(_\d+)?/(MatMul|einsum)", rest):
            return where, "attention_scores"
        if re.search(r"/feedforward_intermediate_dense", rest):
            return where, "gelu" if op_name == "GELU" or "/Gelu" in rest else "ffn_intermediate"
        if re.search(r"/feedforward_output_dense", rest):
            return where, "ffn_output"
        if re.search(r"^(_\d+)?/add_1\b", rest):
            return where, "ffn_residual"
        if re.search(r"^(_\d+)?/add\b", rest):
            return where, "attention_residual"
        return where, op_name.lower() or "other"
    if re.search(r"embeddings_layer_norm", name):
        return "embeddings", "layernorm"
    if re.search(r"embeddings_add", name):
        return "embeddings", "sum"
    if re.search(r"(token|position|segment)_embedding", name):
        return "embeddings", "lookup"
    if re.search(r"pooled_dense|pooler", name):
        return "head", "pooler"
    if name.startswith("StatefulPartitionedCall") or re.search(r"output_dense|logits", name):
        return "head", "classifier"
    return "other", op_name.lower() or "other"


@dataclasses.dataclass(frozen=True)
class Node:
    """A quantization candidate of the calibrated graph: one op, named by its output tensor."""

    index: int
    op_name: str
    tensor_name: str
    layer: str
    kind: str

    def group(self, granularity: str = "layer_kind") -> str:
        if granularity == "layer_kind":
            return f"{self.layer}/{self.kind}"
        if granularity == "kind":
            return self.kind if self.layer.startswith("layer_") else f"{self.layer}/{self.kind}"
        if granularity == "layer":
            return self.layer
        return self.tensor_name


@dataclasses.dataclass
class Evaluation:
    """A candidate model against Keras on the held-out set."""

    label_agreement: float
    mean_logit_error: float
    max_logit_error: float
    size_bytes: int


@dataclasses.dataclass
class GroupSensitivity:
    """Q-BERT-style sensitivity of one group: the int8 model with only this group kept float."""

    group: str
    nodes: tuple
    op_names: tuple
    evaluation: Evaluation | None = None
    gain: float | None = None  # plain-int8 mean |logit error| minus this model's (> 0: keeping it float helps)
    agreement_gain: float | None = None
    rmse_over_scale: float | None = None  # worst QuantizationDebugger RMSE/scale of its tensors (when measured)

    @property
    def num_ops(self) -> int:
        return len(self.nodes)


@dataclasses.dataclass
class Selection:
    """Which nodes stay float, why, and what the resulting model does on the held-out set."""

    float_groups: list  # [GroupSensitivity] chosen by the budget, most useful first
    denylisted_nodes: list  # tensor names passed to the quantizer (groups + explicit)
    denylisted_ops: list
    evaluation: Evaluation
    int8_evaluation: Evaluation
    budget: dict
    budget_met: bool
    granularity: str
    holdout_size: int

    @property
    def num_float_ops(self) -> int:
        return len(self.denylisted_nodes)

    def summary(self) -> str:
        e, p = self.evaluation, self.int8_evaluation
        budget = ", ".join(f"{k}={v}" for k, v in self.budget.items())
        lines = [f"mixed precision ({budget}; {'met' if self.budget_met else 'NOT met'}): "
                 f"{self.num_float_ops} denylisted nodes{' + ops ' + str(self.denylisted_ops) if self.denylisted_ops else ''}"
                 f", agreement {e.label_agreement:.4f} (int8 {p.label_agreement:.4f}), mean |logit error| "
                 f"{e.mean_logit_error:.4f} (int8 {p.mean_logit_error:.4f}), {e.size_bytes / 1e6:.2f} MB "
                 f"(int8 {p.size_bytes / 1e6:.2f} MB) on {self.holdout_size} held-out examples"]
        for g in self.float_groups:
            why = (f"keeping it float alone cuts the mean |logit error| by {g.gain:.4f} and changes agreement by "
                   f"{g.agreement_gain:+.4f}" if g.gain is not None else "denylisted explicitly")
            if g.rmse_over_scale is not None:
                why += f"; worst int8 RMSE/scale {g.rmse_over_scale:.2f}"
            lines.append(f"  float: {g.group} ({g.num_ops} ops: {', '.join(sorted(set(g.op_names)))}): {why}")
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {
            "budget": self.budget, "budget_met": self.budget_met, "granularity": self.granularity,
            "float_groups": [g.group for g in self.float_groups], "float_nodes": self.num_float_ops,
            "denylisted_ops": list(self.denylisted_ops), "holdout_size": self.holdout_size,
            "holdout_agreement": round(self.evaluation.label_agreement, 4),
            "holdout_mean_logit_error": round(self.evaluation.mean_logit_error, 5),
            "int8_holdout_agreement": round(self.int8_evaluation.label_agreement, 4),
            "int8_holdout_mean_logit_error": round(self.int8_evaluation.mean_logit_error, 5),
        }


@dataclasses.dataclass
class MixedPrecisionResult:
    export: object  # tfbertopt.export.litert.ExportResult, quantization "mixed"
    selection: Selection

    @property
    def path(self) -> str:
        return self.export.path

    def summary(self) -> str:
        return f"{self.export.path} ({self.export.size_mb:.2f} MB): {self.selection.summary()}"


def _validate_budget(max_float_ops, min_agreement, max_logit_error) -> dict:
    given = {k: v for k, v in (("max_float_ops", max_float_ops), ("min_agreement", min_agreement),
                               ("max_logit_error", max_logit_error)) if v is not None}
    if len(given) != 1:
        raise ValueError(f"give exactly one budget: max_float_ops= (how many ops may stay float), min_agreement= "
                         f"(label agreement with Keras to reach, in (0, 1]) or max_logit_error= (mean |logit "
                         f"error| to reach, > 0); got {given or 'none'}")
    if max_float_ops is not None:
        if isinstance(max_float_ops, bool) or not isinstance(max_float_ops, (int, np.integer)) or max_float_ops < 0:
            raise ValueError(f"max_float_ops must be a non-negative integer number of ops, got {max_float_ops!r}")
    if min_agreement is not None:
        if isinstance(min_agreement, bool) or not isinstance(min_agreement, (int, float)) or not (
                0 < min_agreement <= 1):
            raise ValueError(f"min_agreement is a label-agreement fraction in (0, 1], got {min_agreement!r}")
    if max_logit_error is not None:
        if isinstance(max_logit_error, bool) or not isinstance(max_logit_error, (int, float)) or not (
                max_logit_error > 0 and math.isfinite(max_logit_error)):
            raise ValueError(f"max_logit_error is a positive, finite mean |logit error|, got {max_logit_error!r}")
    return given


class MixedPrecision:
    """Calibrates `model` once and builds int8 models with chosen ops left float (see the module docstring).

    Args:
      model: a keras-hub BERT-family classifier (with its preprocessor when `calibration`/`holdout` are Examples).
      calibration: calibration set, as for `export_litert(..., "int8")`: a feature dict or GLUE Examples.
      sequence_length: fixed export length (batch 1).
      calibration_steps: calibration examples used (seeded sample).
      holdout: examples to measure sensitivity/agreement on (feature dict or Examples); None uses the calibration
        examples themselves (in-sample: say so when reporting).
      holdout_size: at most this many held-out examples (seeded sample).
      granularity: how nodes are grouped: "layer_kind" (e.g. layer_3/softmax), "kind" (all softmaxes together),
        "layer" (whole encoder blocks) or "node" (each op).
      num_threads: interpreter threads for the held-out evaluations.
      attention_masking: as `export_litert`: "floor" (int8-safe, default) or "keras" (-1e9, for comparison);
        "additive" is refused (its -1e9 bias would reach an int8 softmax).
      trace_form: as `export_litert`: "keras" (default here: the graph whose op groups `classify_tensor` names)
        or "integer" (MUL-based LayerNorm, plain gathers: faster int8, for op-kind denylists such as
        `quantize(denylisted_ops=["BATCH_MATMUL", "SOFTMAX"])`).
    """

    def __init__(self, model, calibration, sequence_length: int = 128, calibration_steps: int = 100,
                 holdout=None, holdout_size: int = 200, granularity: str = "layer_kind", num_threads: int = 2,
                 attention_masking: str = "floor", trace_form: str = "keras"):
        if granularity not in GRANULARITIES:
            raise ValueError(f"unknown granularity {granularity!r}; choose one of {GRANULARITIES}")
        if not sequence_length:
            raise ValueError("mixed precision needs a fixed sequence_length (batch 1), as full-integer export does")
        if calibration is None:
            raise ValueError("mixed precision needs a calibration set: pass calibration= a feature dict from "
                             "tfbertopt.data.pipeline.encode or GLUE Examples")
        self.granularity = granularity
        self.sequence_length = int(sequence_length)
        self.num_threads = num_threads
        with without_preprocessor(model):
            names = model_input_names(model)
        self.input_names = names
        self.calibration = calibration_features(calibration, model, names, sequence_length, calibration_steps)
        if holdout is None:
            self.holdout = self.calibration
            logger.info("no holdout= given: measuring agreement on the %d calibration examples (in-sample)",
                        len(self.calibration["token_ids"]))
        else:
            self.holdout = calibration_features(holdout, model, names, sequence_length, holdout_size, seed=1)
        self.reference_logits = predict_logits(model, self.holdout)
        # Traced with the int8-safe attention mask (unless attention_masking="keras") and, by default, Keras' own
        # LayerNorm and embedding ops (trace_form="keras"), the graph whose op groups `classify_tensor` names.
        # What QuantizationDebugger does: stop after calibration; quantize later, as often as needed.
        with saved_model(model, sequence_length, "int8", attention_masking, trace_form=trace_form) as (tmp, _):
            try:
                representative = representative_dataset(self.calibration, names, sequence_length)
                self.calibrated_model = convert_saved_model(tmp, "int8", representative, calibrate_only=True)
            except ExportError as e:
                raise ExportError(f"calibration for mixed precision failed: {e}") from e
        self.nodes = self._candidates()
        self._cache: dict = {}
        self._sensitivity: list | None = None
        self._debugger: dict | None = None

    # -- graph ------------------------------------------------------------------------------------------------
    def _candidates(self) -> list:
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_content=self.calibrated_model)
        nodes, seen, producer = [], set(), {}
        for op in interpreter._get_ops_details():  # noqa: SLF001 (graph order: producers come first)
            if op["op_name"] not in CANDIDATE_OPS + FOLLOWER_OPS or not len(op["outputs"]):
                continue
            detail = interpreter._get_tensor_details(op["outputs"][0], 0)  # noqa: SLF001
            if np.dtype(detail["dtype"]) != np.float32 or detail["name"] in seen:
                continue  # integer index arithmetic is never quantized
            seen.add(detail["name"])
            layer, kind = classify_tensor(detail["name"], op["op_name"])
            if op["op_name"] in FOLLOWER_OPS:
                source = next((producer[i] for i in op["inputs"] if i in producer), None)
                if source is None:
                    continue
                layer, kind = source
            producer[op["outputs"][0]] = (layer, kind)
            nodes.append(Node(op["index"], op["op_name"], detail["name"], layer, kind))
        return nodes

    def groups(self, granularity: str | None = None) -> dict[str, list]:
        """{group name: [Node]} in graph order."""
        granularity = granularity or self.granularity
        out: dict[str, list] = {}
        for node in self.nodes:
            out.setdefault(node.group(granularity), []).append(node)
        return out

    def quantize(self, denylisted_nodes=(), denylisted_ops=(), numeric_verify: bool = False) -> bytes:
        """The int8 flatbuffer with these output tensors / op names left float (float I/O as export_litert)."""
        from tensorflow.lite.python import convert

        return convert.mlir_quantize(self.calibrated_model, enable_numeric_verify=numeric_verify,
                                     denylisted_ops=list(denylisted_ops) or None,
                                     denylisted_nodes=list(denylisted_nodes) or None)

    def evaluate(self, denylisted_nodes=(), denylisted_ops=()) -> Evaluation:
        """The re-quantized model against the Keras logits on the held-out set (cached per denylist)."""
        key = (frozenset(denylisted_nodes), frozenset(denylisted_ops))
        if key not in self._cache:
            flatbuffer = self.quantize(denylisted_nodes, denylisted_ops)
            logits = self._run(flatbuffer)
            ref = self.reference_logits
            diff = np.abs(logits - ref)
            if ref.shape[-1] == 1:
                agreement = float(np.mean(np.abs(logits[:, 0] - ref[:, 0]) <= 0.1))
            else:
                agreement = float(np.mean(logits.argmax(-1) == ref.argmax(-1)))
            self._cache[key] = Evaluation(agreement, float(diff.mean()), float(diff.max()), len(flatbuffer))
        return self._cache[key]

    def _run(self, flatbuffer: bytes) -> np.ndarray:
        from ai_edge_litert.interpreter import Interpreter

        runner = Interpreter(model_content=flatbuffer, num_threads=self.num_threads).get_signature_runner(
            "serving_default")
        n = len(self.holdout["token_ids"])
        out = [runner(**{k: self.holdout[k][i:i + 1] for k in self.input_names})["logits"] for i in range(n)]
        return np.concatenate(out).astype(np.float32)

    # -- sensitivity ------------------------------------------------------------------------------------------
    def debugger_statistics(self, steps: int | None = 32) -> dict[str, dict]:
        """Per-tensor int8 error from `tf.lite.experimental.QuantizationDebugger` on calibration examples.

        {tensor name: {"op_name", "group", "rmse", "rmse_over_scale", "max_abs_error", "scale"}}. Each int8 op is
        compared with its float twin fed the same (dequantized) inputs, so the numbers are per-op, not
        accumulated. RMSE/scale ~0.29 is rounding noise; much larger means the calibrated range clips or is
        dominated by outliers.
        """
        if self._debugger is not None:
            return self._debugger
        import tensorflow as tf

        debug_model = self.quantize(numeric_verify=True)
        n = len(self.calibration["token_ids"]) if steps is None else min(steps, len(self.calibration["token_ids"]))
        interpreter_inputs = None

        def dataset():
            for i in range(n):
                yield [self.calibration[name][i:i + 1] for name in interpreter_inputs]

        options = tf.lite.experimental.QuantizationDebugOptions(
            layer_debug_metrics={"rmse": lambda diffs: float(np.sqrt(np.mean(np.square(diffs))))})
        debugger = tf.lite.experimental.QuantizationDebugger(quant_debug_model_content=debug_model,
                                                            debug_dataset=dataset, debug_options=options)
        quant = debugger._quant_interpreter  # noqa: SLF001
        interpreter_inputs = [self._input_for(d["name"]) for d in quant.get_input_details()]
        debugger.run()
        by_name = {node.tensor_name: node for node in self.nodes}
        stats = {}
        for name, metrics in debugger.layer_statistics.items():
            tensor_idx = debugger._numeric_verify_op_details[name]["inputs"][0]  # noqa: SLF001
            detail = quant._get_tensor_details(tensor_idx, 0)  # noqa: SLF001
            op_name = quant._get_op_details(debugger._defining_op[tensor_idx])["op_name"]  # noqa: SLF001
            scales = detail["quantization_parameters"]["scales"]
            scale = float(scales[0]) if len(scales) else float("nan")
            tensor = detail["name"]
            node = by_name.get(tensor)
            layer, kind = (node.layer, node.kind) if node else classify_tensor(tensor, op_name)
            stats[tensor] = {"op_name": op_name, "group": Node(-1, op_name, tensor, layer, kind).group(
                self.granularity), "rmse": float(metrics["rmse"]), "scale": scale,
                "rmse_over_scale": float(metrics["rmse"]) / scale if scale > 0 else float("nan"),
                "max_abs_error": float(metrics["max_abs_error"])}
        self._debugger = stats
        return stats

    def _input_for(self, interpreter_name: str) -> str:
        for name in sorted(self.input_names, key=len, reverse=True):
            if name in interpreter_name:
                return name
        raise ValueError(f"cannot match the model input {interpreter_name!r} to {self.input_names}")

    def sensitivity(self, with_debugger: bool = True) -> list:
        """[GroupSensitivity], most sensitive first: per group, the int8 model with only that group float."""
        if self._sensitivity is not None:
            return self._sensitivity
        base = self.evaluate()
        debug = {}
        if with_debugger:
            try:
                debug = self.debugger_statistics()
            except Exception as e:  # noqa: BLE001  (the debugger is a diagnostic: its failure must not stop us)
                logger.warning("QuantizationDebugger failed (%s); ranking by held-out error only", e)
        out = []
        for group, nodes in self.groups().items():
            names = tuple(n.tensor_name for n in nodes)
            ev = self.evaluate(names)
            # The quantized graph renames some tensors (fused ops), so debugger stats are matched by group.
            ratios = [v["rmse_over_scale"] for v in debug.values() if v["group"] == group
                      and math.isfinite(v["rmse_over_scale"])]
            out.append(GroupSensitivity(group, names, tuple(n.op_name for n in nodes), ev,
                                        base.mean_logit_error - ev.mean_logit_error,
                                        ev.label_agreement - base.label_agreement,
                                        max(ratios) if ratios else None))
            logger.info("sensitivity %s: %d ops, agreement %.4f, mean |logit error| %.4f (gain %.4f)", group,
                        len(nodes), ev.label_agreement, ev.mean_logit_error, out[-1].gain)
        out.sort(key=lambda g: (-g.gain, -g.agreement_gain))
        self._sensitivity = out
        return out

    # -- selection / export -----------------------------------------------------------------------------------
    def select(self, max_float_ops: int | None = None, min_agreement: float | None = None,
               max_logit_error: float | None = None, denylisted_nodes=(), denylisted_ops=()) -> Selection:
        """Keeps the most sensitive groups float under exactly one budget (plus explicit denylists).

        max_float_ops: at most this many candidate ops float (groups with positive gain, best first, that fit).
        min_agreement / max_logit_error: add groups best first (helpful groups by gain, then the others by
          debugger RMSE/scale) until the held-out label agreement with Keras / mean |logit error| reaches the
          target; `budget_met` is False when even all candidates float do not.
        denylisted_nodes / denylisted_ops: always float (output tensor names / op names like "SOFTMAX"); they do
          not count against max_float_ops.
        """
        budget = _validate_budget(max_float_ops, min_agreement, max_logit_error)
        known_ops = {n.op_name for n in self.nodes}
        unknown = sorted(set(denylisted_ops) - known_ops - set(CANDIDATE_OPS))
        if unknown:
            raise ValueError(f"denylisted_ops {unknown} match no op of this graph; its quantizable ops are "
                             f"{sorted(known_ops)}")
        names = {n.tensor_name for n in self.nodes}
        missing = [n for n in denylisted_nodes if n not in names]
        if missing:
            raise ValueError(f"denylisted_nodes {missing[:3]}{'...' if len(missing) > 3 else ''} are not output "
                             f"tensors of quantizable ops of this graph (see MixedPrecision.nodes)")
        fixed = list(dict.fromkeys(denylisted_nodes))
        fixed_ops = list(dict.fromkeys(denylisted_ops))
        base = self.evaluate()
        sensitivity = self.sensitivity()
        ranked = [g for g in sensitivity if g.gain > 0 or g.agreement_gain > 0]
        if max_float_ops is None:
            # Errors of single groups interact: once the helpful groups are float, a target may still need the rest,
            # taken by the debugger's RMSE/scale (all candidates float is the float model, so targets are reachable
            # up to the ops that no quantizer decision controls).
            rest = [g for g in sensitivity if g not in ranked]
            ranked += sorted(rest, key=lambda g: -(g.rmse_over_scale or 0.0))

        def met(ev):
            if min_agreement is not None:
                return ev.label_agreement >= min_agreement
            if max_logit_error is not None:
                return ev.mean_logit_error <= max_logit_error
            return True

        chosen, nodes = [], list(fixed)
        if max_float_ops is not None:
            used = 0
            for g in ranked:
                new = [n for n in g.nodes if n not in nodes]
                if used + len(new) <= max_float_ops:
                    chosen.append(g)
                    nodes += new
                    used += len(new)
            ev = self.evaluate(nodes, fixed_ops)
        else:
            ev = self.evaluate(nodes, fixed_ops)
            for g in ranked:
                if met(ev):
                    break
                chosen.append(g)
                nodes += [n for n in g.nodes if n not in nodes]
                ev = self.evaluate(nodes, fixed_ops)
        selection = Selection(chosen, nodes, fixed_ops, ev, base, budget, met(ev), self.granularity,
                              len(self.holdout["token_ids"]))
        if not selection.budget_met:
            logger.warning("mixed precision budget %s not reached: %s", budget, selection.summary().splitlines()[0])
        return selection

    def export(self, path, selection: Selection):
        """Writes the selected mixed-precision model; returns a MixedPrecisionResult (op_report included)."""
        flatbuffer = self.quantize(selection.denylisted_nodes, selection.denylisted_ops)
        ops = op_counts(flatbuffer)
        foreign = sorted(op for op in ops if op.startswith("Flex") or op in ("CUSTOM", "DELEGATE", "NumericVerify"))
        if foreign:
            raise ExportError(f"mixed-precision model contains non-builtin ops {foreign}; refusing to write {path}")
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        with open(path, "wb") as f:
            f.write(flatbuffer)
        report = op_report(path)
        result = ExportResult(str(path), "mixed", len(flatbuffer), ops, self.sequence_length, self.input_names,
                              report)
        logger.info("wrote %s: %s", path, selection.summary())
        return MixedPrecisionResult(result, selection)


def export_mixed_precision(model, path, sequence_length: int = 128, calibration=None, calibration_steps: int = 100,
                           holdout=None, holdout_size: int = 200, max_float_ops: int | None = None,
                           min_agreement: float | None = None, max_logit_error: float | None = None,
                           denylisted_nodes=(), denylisted_ops=(), granularity: str = "layer_kind"):
    """One call: calibrate, measure sensitivity, select under the budget, write `path`. See `MixedPrecision`."""
    _validate_budget(max_float_ops, min_agreement, max_logit_error)  # fail before the slow part
    mp = MixedPrecision(model, calibration, sequence_length, calibration_steps, holdout, holdout_size, granularity)
    selection = mp.select(max_float_ops=max_float_ops, min_agreement=min_agreement, max_logit_error=max_logit_error,
                          denylisted_nodes=denylisted_nodes, denylisted_ops=denylisted_ops)
    return mp.export(path, selection)
