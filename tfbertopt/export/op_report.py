"""What a .tflite file computes in which precision, which ops stayed float and why, and what XNNPACK runs.

`op_report(path)` reads the model with the LiteRT interpreter (`_get_ops_details` / `get_tensor_details`, offline)
and classifies every operator by the types of its tensors:

- `int8` / `int16`: quantized activations in and out (full-integer kernels);
- `hybrid`: float activations with int8 weights (dynamic-range quantization);
- `float32` / `float16`: float activations (listed in `float_ops` with the reason where it can be told);
- `integer`: int32/int64/bool index or mask arithmetic (token-id lookups, padding masks): never a quantization
  candidate;
- `conversion`: QUANTIZE / DEQUANTIZE (float <-> integer, or requantization between scales).

It also allocates the interpreter the way `run_litert` and `litert_latency_ms` do (default XNNPACK delegate) and
records which ops XNNPACK took (`delegated`) and into how many partitions it cut the graph: ops left to the builtin
kernels and every partition boundary cost time.

Per-op latency is not measured: LiteRT's op profiler (the C++ `benchmark_model --enable_op_profiling` tool) has no
Python binding in ai-edge-litert 2.3 or tf.lite (their Interpreter has no profiler or op-resolver hook that times
nodes, and no `benchmark_model` binary ships with the wheels), so this module times nothing rather than guess.

Example:

>>> import os, tempfile
>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.export.litert import export_litert, op_counts
>>> from tfbertopt.export.op_report import op_report
>>> clf = tiny_bert_classifier(["good", "bad"], sequence_length=16)
>>> path = export_litert(clf, os.path.join(tempfile.mkdtemp(), "m.tflite"), quantization="dynamic",
...                      sequence_length=16).path
>>> report = op_report(path)
>>> report.counts["FULLY_CONNECTED"]["hybrid"] > 0, report.op_counts == op_counts(path)
(True, True)
>>> report.summary().splitlines()[0]
'...m.tflite: ... ops: ... hybrid, ...; XNNPACK: ... ops in ... partitions'
"""

from __future__ import annotations

import collections
import dataclasses

import numpy as np

KINDS = ("int8", "int16", "hybrid", "float32", "float16", "integer", "conversion")
_CONVERSIONS = {"QUANTIZE", "DEQUANTIZE"}


@dataclasses.dataclass
class OpInfo:
    index: int
    op_name: str
    kind: str
    input_types: tuple
    output_types: tuple
    output_name: str
    delegated: bool | None = None
    reason: str | None = None


@dataclasses.dataclass
class OpReport:
    path: str
    ops: list
    delegate_partitions: int | None = None

    @property
    def counts(self) -> dict[str, collections.Counter]:
        """{op name: Counter(kind)}, e.g. counts["FULLY_CONNECTED"]["int8"]."""
        out: dict[str, collections.Counter] = {}
        for op in self.ops:
            out.setdefault(op.op_name, collections.Counter())[op.kind] += 1
        return out

    @property
    def op_counts(self) -> collections.Counter:
        return collections.Counter(op.op_name for op in self.ops)

    @property
    def kind_counts(self) -> collections.Counter:
        return collections.Counter(op.kind for op in self.ops)

    @property
    def float_ops(self) -> list:
        return [op for op in self.ops if op.kind in ("float32", "float16")]

    @property
    def float_op_count(self) -> int:
        return len(self.float_ops)

    @property
    def not_delegated(self) -> collections.Counter:
        """Op names (and how often) that the XNNPACK delegate did not take (they run on LiteRT's builtin kernels)."""
        return collections.Counter(op.op_name for op in self.ops if op.delegated is False)

    def summary(self) -> str:
        kinds = [k for k in KINDS if self.kind_counts[k]]
        width = max([len(name) for name in self.counts] + [7])
        lines = [f"{self.path}: {len(self.ops)} ops: "
                 + ", ".join(f"{self.kind_counts[k]} {k}" for k in kinds)
                 + (f"; XNNPACK: {sum(op.delegated is True for op in self.ops)} ops in "
                    f"{self.delegate_partitions} partitions" if self.delegate_partitions is not None else "")]
        header = "op".ljust(width) + "".join(k.rjust(11) for k in kinds)
        if self.delegate_partitions is not None:
            header += "  not XNNPACK"
        lines.append(header)
        for name, counter in sorted(self.counts.items(), key=lambda kv: (-sum(kv[1].values()), kv[0])):
            row = name.ljust(width) + "".join(str(counter[k] or "").rjust(11) for k in kinds)
            if self.delegate_partitions is not None:
                row += str(self.not_delegated[name] or "").rjust(13)
            lines.append(row)
        reasons = {op.reason for op in self.float_ops}
        if len(reasons) <= 1:  # a float or dynamic-range model: one reason for all, no list
            if self.float_ops:
                names = collections.Counter(op.op_name for op in self.float_ops)
                listed = ", ".join(f"{n} x{c}" for n, c in names.most_common(4)) + (", ..." if len(names) > 4 else "")
                lines.append(f"float ops ({len(self.float_ops)}: {listed}): {reasons.pop()}")
            return "\n".join(lines)
        groups: dict[tuple, list] = {}
        for op in self.float_ops:
            groups.setdefault((op.op_name, op.kind, op.reason), []).append(op)
        lines.append(f"float ops ({len(self.float_ops)}):")
        for (name, kind, reason), ops in groups.items():
            where = ops[0].output_name.split(";")[0]
            lines.append(f"  {name} x{len(ops)} ({kind}, e.g. {where[-70:]}): {reason}")
        return "\n".join(lines)


def _type_name(dtype) -> str:
    return np.dtype(dtype).name


def _classify(op_name, inputs, outputs) -> str:
    """Kind of one op from its (type name, is_quantized) inputs/outputs; constant weights count as inputs."""
    if op_name in _CONVERSIONS:
        return "conversion"
    out_types = {t for t, _ in outputs}
    in_types = {t for t, _ in inputs}
    if out_types & {"float32", "float16"}:
        if any(t == "int8" for t in in_types):
            return "hybrid"
        return "float16" if "float16" in out_types and "float32" not in out_types else "float32"
    if any(t == "int16" and q for t, q in outputs):
        return "int16"
    if any(t == "int8" and q for t, q in outputs):
        return "int8"
    if any(t == "int16" and q for t, q in inputs):
        return "int16"
    if any(t == "int8" and q for t, q in inputs):
        return "int8"
    return "integer"


def op_report(path, num_threads: int = 2, delegates: bool = True) -> OpReport:
    """Per-op precision, float ops with reasons, and (with `delegates`) which ops the default XNNPACK delegate took.

    Args:
      path: a .tflite file.
      num_threads: threads for the interpreter that is allocated to see the delegate partitions.
      delegates: allocate the interpreter and report XNNPACK's partitions (a few hundred ms for a BERT-base-sized
        file); False reads the graph only.
    """
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
    details = interpreter._get_ops_details()
    tensors = {t["index"]: t for t in interpreter.get_tensor_details()}

    def describe(index):
        t = tensors.get(index)
        if t is None:
            return ("unknown", False)
        scales = t["quantization_parameters"]["scales"]
        return (_type_name(t["dtype"]), len(scales) > 0)

    producer = {}
    consumers = collections.defaultdict(list)
    for op in details:
        for i in op["outputs"]:
            producer[i] = op
        for i in op["inputs"]:
            if i >= 0:
                consumers[i].append(op)
    output_tensors = {d["index"] for d in interpreter.get_output_details()}

    ops = []
    for op in details:
        inputs = [describe(i) for i in op["inputs"] if i >= 0]
        outputs = [describe(i) for i in op["outputs"]]
        kind = _classify(op["op_name"], inputs, outputs)
        name = tensors[op["outputs"][0]]["name"] if op["outputs"] and op["outputs"][0] in tensors else ""
        ops.append(OpInfo(op["index"], op["op_name"], kind, tuple(t for t, _ in inputs),
                          tuple(t for t, _ in outputs), name))

    # Activation quantization shows as QUANTIZE ops; an int8 embedding GATHER alone (dynamic range) does not count.
    full_integer = any(op.op_name == "QUANTIZE" and "float32" in op.input_types for op in ops)
    hybrid = any(op.kind == "hybrid" for op in ops)
    for op, raw in zip(ops, details):
        if op.kind in ("float32", "float16"):
            op.reason = _float_reason(op, raw, producer, consumers, output_tensors, full_integer, hybrid)

    report = OpReport(str(path), ops)
    if delegates:
        _mark_delegated(Interpreter(model_path=str(path), num_threads=num_threads), report, len(details))
    return report


def _float_reason(op, raw, producer, consumers, output_tensors, full_integer, hybrid) -> str:
    if not full_integer:
        if hybrid:
            return ("dynamic-range quantization keeps every activation in float; only weights of matmul ops are "
                    "int8 (those ops count as hybrid)")
        if op.kind == "float16":
            return "float16 computation"
        return "float model: no activation was quantized"
    fed_by_dequantize = any(producer.get(i, {}).get("op_name") == "DEQUANTIZE" for i in raw["inputs"] if i >= 0)
    feeds_quantize = any(c["op_name"] == "QUANTIZE" for i in raw["outputs"] for c in consumers.get(i, []))
    feeds_output = any(i in output_tensors for i in raw["outputs"])
    if fed_by_dequantize and feeds_quantize:
        return (f"the converter has no integer rule for {op.op_name} here: it runs in float between DEQUANTIZE "
                f"and QUANTIZE (the island costs two conversions per call)")
    if fed_by_dequantize and feeds_output:
        return "computes a float model output after the final DEQUANTIZE"
    if fed_by_dequantize:
        return f"the converter dequantized the input of {op.op_name}: no integer rule for it here"
    if feeds_output:
        return "produces a float model output"
    return "left float by the converter (no quantized neighbour to explain it)"


def _mark_delegated(interpreter, report: OpReport, n_original: int) -> None:
    """After allocation the execution plan gains one DELEGATE node per XNNPACK partition; the original nodes it
    replaced are those between the partition's input and output tensors."""
    try:
        interpreter.allocate_tensors()
        details = interpreter._get_ops_details()
    except Exception:  # an interpreter that cannot allocate still gets its precision report
        return
    delegate_nodes = [op for op in details[n_original:] if op["op_name"] == "DELEGATE"]
    producer = {}
    for op in details[:n_original]:
        for i in op["outputs"]:
            producer[i] = op["index"]
    delegated = set()
    for node in delegate_nodes:
        boundary = {i for i in node["inputs"] if i >= 0}
        stack = list(node["outputs"])
        seen = set()
        while stack:
            tensor = stack.pop()
            if tensor in seen or tensor in boundary or tensor not in producer:
                continue
            seen.add(tensor)
            index = producer[tensor]
            delegated.add(index)
            stack.extend(i for i in details[index]["inputs"] if i >= 0)
    for op in report.ops:
        op.delegated = op.index in delegated
    report.delegate_partitions = len(delegate_nodes)
