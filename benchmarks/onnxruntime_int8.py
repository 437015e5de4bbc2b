"""ONNX Runtime dynamic int8 and the plain TFLiteConverter default, beside tfbertopt's LiteRT exports, in one run
(issue 4).

Teacher: a fine-tuned classifier .keras (e.g. runs/mrpc-minilm-baseline/00_finetune/model.keras from
`tfbertopt run recipes/mrpc_minilm_baseline.yaml`). Every row is scored on the task's full dev set at batch 1,
sequence length 128, checked against the Keras logits, and timed at batch 1, sequence length 128 with 2 and 1
threads: median of `--runs` runs after 5 warm-up runs, the same inputs and protocol as
`tfbertopt.bench.latency.litert_latency_ms`.

    pip install -e .[onnx]
    python benchmarks/onnxruntime_int8.py --teacher runs/mrpc-minilm-baseline/00_finetune/model.keras --task mrpc \
        --out benchmarks/results/mrpc_onnxruntime.json

Rows:
  baseline           tfbertopt's float32 LiteRT export (`export_litert`).
  ptq-dynamic        tfbertopt's dynamic-range int8 LiteRT export.
  converter-default  what a plain TensorFlow user gets: `tf.lite.TFLiteConverter.from_keras_model(model)` with
                     `optimizations=[tf.lite.Optimize.DEFAULT]` and nothing else; when that cannot convert the
                     keras-hub model, the next plain routes are tried (a concrete function, then Keras'
                     `model.export` SavedModel), each attempt and its error recorded in the row's `attempts`.
  onnx-float32       the same weights as ONNX (Keras' `model.export(format="onnx")`, i.e. tf2onnx, else tf2onnx on
                     tfbertopt's serving SavedModel), run with onnxruntime; checked against Keras logits. Reference
                     row (no tag of its own in BENCHMARKS.md: `tags` is empty, `notes` says what it is).
  onnxruntime-int8   `onnxruntime.quantization.quantize_dynamic` (QInt8 weights, dynamic int8 activations in
                     MatMul) of that ONNX file with its defaults (per-tensor weight scales), run with onnxruntime.
  onnxruntime-int8-per-channel  the same with `per_channel=True` (per-output-channel weight scales, as LiteRT's
                     dynamic-range files have); also tagged onnxruntime-int8.

For the ONNX rows `tflite_mb` / `tflite_score` hold the ONNX file's size and its dev score under onnxruntime
(`runtime: onnxruntime`), so that the ratio columns and plots treat every exported file alike.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402

from tfbertopt import metrics as metrics_lib  # noqa: E402
from tfbertopt.bench import harness, latency  # noqa: E402
from tfbertopt.bench.harness import command_line  # noqa: E402
from tfbertopt.data.glue import load_glue  # noqa: E402
from tfbertopt.data.pipeline import encode, without_preprocessor  # noqa: E402
from tfbertopt.export.litert import ExportResult, model_input_names, op_counts, saved_model  # noqa: E402
from tfbertopt.export.verify import VerificationReport  # noqa: E402
from tfbertopt.kernels import count_params  # noqa: E402
from tfbertopt.saving import load_model  # noqa: E402
from tfbertopt.train import predict_logits, predictions_from_logits  # noqa: E402

SEQ = 128
WARMUP = 5


def log(message: str) -> None:
    print(f"[onnxruntime_int8 {time.strftime('%H:%M:%S')}] {message}", flush=True)


def short_error(e: BaseException, limit: int = 600) -> str:
    text = f"{type(e).__name__}: {e}".strip()
    frames = traceback.extract_tb(e.__traceback__)
    if frames:
        where = frames[-1]
        text += f" (raised at {where.filename.split('site-packages/')[-1]}:{where.lineno} in {where.name})"
    return text if len(text) <= limit else text[:limit] + " ..."


def timing_inputs(names, dtypes, seed: int = 0) -> dict:
    """The inputs `litert_latency_ms` times with: ids 0-4, an all-ones padding mask, zero segment ids."""
    rng = np.random.default_rng(seed)
    out = {}
    for name in names:
        if "token_ids" in name:
            value = rng.integers(0, 5, size=(1, SEQ))
        elif "padding_mask" in name:
            value = np.ones((1, SEQ))
        else:
            value = np.zeros((1, SEQ))
        out[name] = value.astype(dtypes[name])
    return out


def median_ms(call, runs: int) -> float:
    for _ in range(WARMUP):
        call()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        call()
        times.append((time.perf_counter() - start) * 1e3)
    return float(statistics.median(times))


def report_for(task, labels, keras_logits, logits, quantized: bool, min_agreement=0.995, max_diff=1e-4):
    """A `VerificationReport` with the same criteria as `verify_litert`, for logits from any runtime."""
    nan = int(np.isnan(logits).any(axis=-1).sum())
    diff = np.abs(np.nan_to_num(logits, nan=np.inf) - keras_logits)
    kp = predictions_from_logits(task, keras_logits)
    rp = predictions_from_logits(task, np.nan_to_num(logits, nan=0.0))
    agreement = float(np.mean(kp == rp))
    passed = nan == 0 and (agreement >= min_agreement if quantized else float(diff.max()) <= max_diff)
    return VerificationReport(
        n=len(keras_logits), max_logit_diff=float(diff.max()),
        mean_logit_diff=float(diff[np.isfinite(diff)].mean()) if np.isfinite(diff).any() else float("inf"),
        label_agreement=agreement, keras_score=metrics_lib.primary_score(task, labels, kp),
        tflite_score=metrics_lib.primary_score(task, labels, rp), metric=task.metric,
        criterion=f"label agreement >= {min_agreement}" if quantized else f"max |logit diff| <= {max_diff}",
        passed=passed, nan_outputs=nan)


def accuracy_extra(task, labels, keras_logits, logits) -> dict:
    """Accuracy beside the headline metric (MRPC's headline is F1)."""
    if task.metric == "accuracy":
        return {}
    return {"keras_accuracy": round(metrics_lib.accuracy(labels, predictions_from_logits(task, keras_logits)), 4),
            "file_accuracy": round(metrics_lib.accuracy(labels, predictions_from_logits(task, logits)), 4)}


def fit(x: np.ndarray) -> np.ndarray:
    return x[:, :SEQ] if x.shape[1] >= SEQ else np.pad(x, ((0, 0), (0, SEQ - x.shape[1])))


# ---------------------------------------------------------------------------------------------- converter-default
class LiteRTFile:
    """Any .tflite (whatever its signature: the converter's defaults name inputs and outputs its own way), run at
    batch 1, sequence length 128."""

    def __init__(self, path, num_threads: int, feature_names):
        from ai_edge_litert.interpreter import Interpreter

        self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
        signatures = self.interpreter.get_signature_list()
        self.key = next(iter(signatures))
        # The signature runner resizes dynamic inputs to the (1, 128) arrays it is called with.
        self.runner = self.interpreter.get_signature_runner(self.key)
        self.details = self.runner.get_input_details()
        # Map each signature input to a feature: by name, else by position in FEATURES order.
        self.map = {}
        for i, name in enumerate(self.details):
            match = [f for f in feature_names if f in name]
            self.map[name] = match[0] if match else feature_names[i]
        outputs = self.runner.get_output_details()
        self.output = "logits" if "logits" in outputs else next(iter(outputs))

    def __call__(self, features: dict) -> np.ndarray:
        x = {n: features[f].astype(self.details[n]["dtype"]) for n, f in self.map.items()}
        return np.asarray(self.runner(**x)[self.output])

    def dev_logits(self, features: dict) -> np.ndarray:
        n = len(features["token_ids"])
        return np.concatenate([self({k: fit(v[i:i + 1]) for k, v in features.items()}) for i in range(n)])

    def latency_ms(self, runs: int) -> float:
        x = timing_inputs(list(self.details), {n: self.details[n]["dtype"] for n in self.details})
        return median_ms(lambda: self.runner(**x), runs)


def converter_default(model, work: str, features: dict, keras_logits: np.ndarray, check_n: int = 16):
    """The plain routes a TensorFlow user would try, in order, each with `optimizations=[DEFAULT]` only.

    Every file a route produces is run on the first `check_n` dev examples against the Keras logits; the first
    route whose file gives finite outputs agreeing with Keras on >= 90% of them is the row, else the first file
    produced (measured and reported as failed). Returns (path or None, route name, attempts)."""
    import tensorflow as tf

    attempts, produced = [], []
    small = {k: v[:check_n] for k, v in features.items()}

    def try_route(name, make):
        log(f"converter-default: trying {name}")
        try:
            converter = make()
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
            flatbuffer = converter.convert()
        except BaseException as e:   # noqa: BLE001 - the error text is the result
            if isinstance(e, KeyboardInterrupt):
                raise
            attempts.append({"route": name, "ok": False, "error": short_error(e)})
            log(f"converter-default: {name} failed: {short_error(e, 300)}")
            return False
        path = os.path.join(work, f"converter_default_{len(attempts)}.tflite")
        with open(path, "wb") as f:
            f.write(flatbuffer)
        attempt = {"route": name, "converted": True, "file_mb": round(len(flatbuffer) / 1e6, 2),
                   "ops": dict(sorted(op_counts(flatbuffer).items()))}
        try:
            logits = LiteRTFile(path, 2, list(features)).dev_logits(small)
            nan = int(np.isnan(logits).any(axis=-1).sum())
            agree = float(np.mean(logits.argmax(-1) == keras_logits[:check_n].argmax(-1)))
            diff = float(np.nanmax(np.abs(logits - keras_logits[:check_n]))) if nan < len(logits) else None
            attempt["check"] = {"examples": check_n, "nan_outputs": nan, "label_agreement": agree,
                                "max_logit_diff": diff}
            attempt["ok"] = nan == 0 and agree >= 0.9
        except BaseException as e:   # noqa: BLE001
            if isinstance(e, KeyboardInterrupt):
                raise
            attempt["check"] = {"error": short_error(e)}
            attempt["ok"] = False
        log(f"converter-default: {name}: converted, check {attempt['check']}")
        attempts.append(attempt)
        produced.append((path, name, attempt["ok"]))
        return attempt["ok"]

    # 1. from_keras_model on the model as loaded (a keras-hub task with its preprocessor attached) ...
    if try_route("TFLiteConverter.from_keras_model(model)", lambda: tf.lite.TFLiteConverter.from_keras_model(model)):
        return produced[-1][0], produced[-1][1], attempts
    # 2. ... and on the token-input model (the preprocessor's string ops cannot be in the file anyway).
    with without_preprocessor(model):
        if try_route("TFLiteConverter.from_keras_model(model with model.preprocessor = None)",
                     lambda: tf.lite.TFLiteConverter.from_keras_model(model)):
            return produced[-1][0], produced[-1][1], attempts
        names = model_input_names(model)
        spec = {n: tf.TensorSpec((1, SEQ), tf.int32, name=n) for n in names}
        fn = tf.function(lambda x: model(x, training=False))
        # 3. A concrete function of the model's call (what the TF guide shows for custom models).
        if try_route("TFLiteConverter.from_concrete_functions([tf.function(lambda x: model(x)).get_concrete_function"
                     f"(dict of (1, {SEQ}) int32 specs)], model)",
                     lambda: tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function(spec)], model)):
            return produced[-1][0], produced[-1][1], attempts
        # 4. Keras 3's own SavedModel export, then from_saved_model.
        tmp = tempfile.mkdtemp()
        try:
            model.export(tmp, format="tf_saved_model", verbose=False)
            exported = True
        except BaseException as e:   # noqa: BLE001
            if isinstance(e, KeyboardInterrupt):
                raise
            attempts.append({"route": "model.export(dir, format='tf_saved_model')", "ok": False,
                             "error": short_error(e)})
            exported = False
    if exported and try_route("model.export(dir) (Keras 3 tf_saved_model) + TFLiteConverter.from_saved_model(dir)",
                              lambda: tf.lite.TFLiteConverter.from_saved_model(tmp)):
        return produced[-1][0], produced[-1][1], attempts
    if produced:
        return produced[0][0], produced[0][1], attempts
    return None, None, attempts


# ---------------------------------------------------------------------------------------------------------- ONNX
def export_onnx(model, path: str, opset: int) -> tuple[str | None, list[dict]]:
    """Float ONNX of `model`: Keras' `model.export(format="onnx")` first, else tf2onnx on tfbertopt's serving
    SavedModel (the same graph the LiteRT files come from)."""
    import tensorflow as tf

    attempts = []
    with without_preprocessor(model):
        names = model_input_names(model)
        log("onnx: keras model.export(format='onnx')")
        try:
            spec = [{n: tf.TensorSpec((1, SEQ), tf.int32, name=n) for n in names}]
            model.export(path, format="onnx", input_signature=spec, opset_version=opset, verbose=False)
            attempts.append({"route": f"model.export(path, format='onnx', input_signature=(1, {SEQ}) int32, "
                                      f"opset_version={opset})", "ok": True})
            return path, attempts
        except BaseException as e:   # noqa: BLE001
            if isinstance(e, KeyboardInterrupt):
                raise
            attempts.append({"route": "model.export(path, format='onnx')", "ok": False, "error": short_error(e)})
            log(f"onnx: keras export failed: {short_error(e, 400)}")
            traceback.print_exc()
    log("onnx: tf2onnx on the serving SavedModel")
    with saved_model(model, SEQ, attention_masking="keras") as (tmp, _):  # the graph its results were measured on
        cmd = [sys.executable, "-m", "tf2onnx.convert", "--saved-model", tmp, "--signature_def", "serving_default",
               "--opset", str(opset), "--output", path]
        proc = subprocess.run(cmd, capture_output=True, text=True)
    ok = proc.returncode == 0 and os.path.exists(path)
    attempts.append({"route": "python -m tf2onnx.convert --saved-model <tfbertopt serving SavedModel> "
                              f"--opset {opset}", "ok": ok,
                     **({} if ok else {"error": proc.stderr[-800:]})})
    return (path if ok else None), attempts


class OnnxFile:
    def __init__(self, path, num_threads: int):
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.inputs = {i.name: i for i in self.session.get_inputs()}
        outputs = [o.name for o in self.session.get_outputs()]
        self.output = next((o for o in outputs if "logits" in o), outputs[0])
        types = {"tensor(int32)": np.int32, "tensor(int64)": np.int64, "tensor(float)": np.float32,
                 "tensor(bool)": np.bool_}
        self.dtypes = {n: types[i.type] for n, i in self.inputs.items()}
        self.map = {}
        for n in self.inputs:
            for f in ("token_ids", "padding_mask", "segment_ids"):
                if f in n:
                    self.map[n] = f

    def __call__(self, features: dict) -> np.ndarray:
        feed = {n: features[f].astype(self.dtypes[n]) for n, f in self.map.items()}
        return np.asarray(self.session.run([self.output], feed)[0])

    def dev_logits(self, features: dict) -> np.ndarray:
        n = len(features["token_ids"])
        return np.concatenate([self({k: fit(v[i:i + 1]) for k, v in features.items()}) for i in range(n)])

    def latency_ms(self, runs: int) -> float:
        x = timing_inputs(list(self.inputs), self.dtypes)
        return median_ms(lambda: self.session.run([self.output], x), runs)

    def op_types(self, path) -> dict:
        import collections

        import onnx

        return dict(sorted(collections.Counter(n.op_type for n in onnx.load(str(path)).graph.node).items()))


# ---------------------------------------------------------------------------------------------------------- main
def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", required=True)
    parser.add_argument("--task", default="sst2", choices=["sst2", "mrpc"])
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--out", default=None, help="default benchmarks/results/<task>_onnxruntime.json")
    parser.add_argument("--work", default=None, help="default runs/<task>-onnxruntime")
    parser.add_argument("--runs", type=int, default=30, help="timed runs per variant and thread count")
    parser.add_argument("--opset", type=int, default=17)
    parser.add_argument("--dev-examples", type=int, default=None, help="first N dev examples (smoke runs)")
    parser.add_argument("--retime", type=int, default=0, metavar="PASSES",
                        help="only re-time every row's file of an existing --out back to back in PASSES round-robin "
                             "passes (LiteRT and onnxruntime alike; a row keeps its fastest pass, as "
                             "tfbertopt.bench.retime does) and re-measure the int8 peak")
    args = parser.parse_args(argv)
    out = args.out or f"benchmarks/results/{args.task}_onnxruntime.json"
    work = args.work or f"runs/{args.task}-onnxruntime"
    if args.retime:
        return retime(out, work, args.retime, args.runs)
    os.makedirs(work, exist_ok=True)

    dev = load_glue(args.task, "dev", data_dir=args.data_dir, max_examples=args.dev_examples)
    task = dev.task
    log(f"{len(dev)} {task.name} dev examples; teacher {args.teacher}")
    teacher = load_model(args.teacher, compile=False)
    features = encode(dev.texts, teacher.preprocessor)
    keras_logits = predict_logits(teacher, features)
    labels = np.asarray(dev.labels)
    macs, params = harness.model_macs(teacher, SEQ), count_params(teacher)
    peak = latency.int8_peak_gmacs(num_threads=2)
    log(f"int8 peak {peak:.0f} GMAC/s")
    rows, command = [], command_line()
    from importlib import metadata

    runtime_versions = {}
    for name in ("onnx", "onnxruntime", "tf2onnx"):
        try:
            runtime_versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            runtime_versions[name] = None

    def save():
        harness.write_results(out, f"{task.name}_onnxruntime", command, rows, peak, extra={
            "data": dev.source, "teacher": args.teacher, "runtime_versions": runtime_versions,
            "latency_protocol": f"batch 1, sequence length {SEQ}, median of {args.runs} runs after {WARMUP} warm-up "
                                f"runs, token ids 0-4, all-ones padding mask; LiteRT via ai-edge-litert "
                                f"Interpreter(num_threads=t), onnxruntime CPUExecutionProvider with "
                                f"intra_op_num_threads=t, inter_op_num_threads=1, ORT_ENABLE_ALL",
            "notes": "peak_share of every row (onnxruntime ones too) uses this machine's LiteRT int8 matmul peak."})

    for variant, tags, q in (("baseline", ["baseline", "teacher", "finetune"], "float32"),
                             ("ptq-dynamic", ["ptq-dynamic"], "dynamic")):
        log(f"{variant}: tfbertopt export_litert({q}), verify, time")
        row = harness.measure_variant(teacher, variant, tags, None if variant == "baseline" else "baseline", dev,
                                      work, peak, quantization=q, runs=args.runs, features=features,
                                      extra={"runtime": "litert", "exporter": f"tfbertopt export_litert({q!r})",
                                             **({"keras_accuracy": round(metrics_lib.accuracy(
                                                 labels, predictions_from_logits(task, keras_logits)), 4)}
                                                if task.metric != "accuracy" else {})})
        rows.append(row)
        save()

    # (c) converter-default
    path, route, attempts = converter_default(teacher, work, features, keras_logits)
    row = {"task": task.name, "variant": "converter-default", "tags": ["converter-default"], "baseline": "baseline",
           "metric": task.metric, "runtime": "litert", "attempts": attempts, "params": int(params),
           "macs": int(macs)}
    if path is None:
        row.update(keras_score=rows[0]["keras_score"], tflite_score=None, tflite_mb=None, latency_ms=None,
                   latency_ms_1thread=None, verified=False,
                   notes="no plain TFLiteConverter route produced a file; see attempts")
    else:
        try:
            ops = op_counts(path)
            runner = LiteRTFile(path, 2, list(features))
            logits = runner.dev_logits(features)
            report = report_for(task, labels, keras_logits, logits, quantized=True)
            lat = {2: runner.latency_ms(args.runs), 1: LiteRTFile(path, 1, list(features)).latency_ms(args.runs)}
            result = ExportResult(path, "dynamic (converter default)", os.path.getsize(path), ops, SEQ, ())
            row.update(harness.litert_row("converter-default", ["converter-default"], "baseline", result, report,
                                          task.name, macs, params, peak, lat[2], lat[1]))
            row.update(attempts=attempts, runtime="litert", dev_examples=len(dev), file=path,
                       route=route, flex_ops=sorted(o for o in ops if o.startswith("Flex")),
                       signature=runner.key,
                       signature_inputs=runner.map, **accuracy_extra(task, labels, keras_logits, logits),
                       notes="optimizations=[tf.lite.Optimize.DEFAULT] only (default supported_ops); inputs resized "
                             f"to (1, {SEQ}) at run time where the file has dynamic shapes")
            print(f"[bench] converter-default: {report.summary()} | {row['tflite_mb']} MB, {row['latency_ms']} ms",
                  flush=True)
        except BaseException as e:   # noqa: BLE001 - a file that does not run is a result
            if isinstance(e, KeyboardInterrupt):
                raise
            traceback.print_exc()
            row.update(keras_score=rows[0]["keras_score"], tflite_score=None, verified=False,
                       tflite_mb=round(os.path.getsize(path) / 1e6, 2), latency_ms=None, latency_ms_1thread=None,
                       notes=f"converted, but running it failed: {short_error(e)}")
    rows.append(row)
    save()

    # (d) ONNX float and onnxruntime dynamic int8
    try:
        import onnxruntime  # noqa: F401
        from onnxruntime.quantization import QuantType, quantize_dynamic
    except ImportError as e:
        rows.append({"task": task.name, "variant": "onnxruntime-int8", "tags": ["onnxruntime-int8"],
                     "baseline": "baseline", "metric": task.metric, "tflite_score": None, "latency_ms": None,
                     "notes": f"onnxruntime is not installed ({e}): pip install -e .[onnx]"})
        save()
        return 1
    float_path, attempts = export_onnx(teacher, os.path.join(work, "model_float32.onnx"), args.opset)
    if float_path is None:
        rows.append({"task": task.name, "variant": "onnxruntime-int8", "tags": ["onnxruntime-int8"],
                     "baseline": "baseline", "metric": task.metric, "tflite_score": None, "latency_ms": None,
                     "attempts": attempts, "notes": "no ONNX export route worked; see attempts"})
        save()
        return 1
    int8_path = os.path.join(work, "model_dynamic_int8.onnx")
    log("onnxruntime-int8: quantize_dynamic(weight_type=QInt8)")
    quantize_dynamic(float_path, int8_path, weight_type=QuantType.QInt8)
    per_channel_path = os.path.join(work, "model_dynamic_int8_per_channel.onnx")
    log("onnxruntime-int8-per-channel: quantize_dynamic(weight_type=QInt8, per_channel=True)")
    quantize_dynamic(float_path, per_channel_path, weight_type=QuantType.QInt8, per_channel=True)
    for variant, tags, path, quantized in (
            ("onnx-float32", [], float_path, False),
            ("onnxruntime-int8", ["onnxruntime-int8"], int8_path, True),
            ("onnxruntime-int8-per-channel", ["onnxruntime-int8"], per_channel_path, True)):
        log(f"{variant}: dev run, verify, time")
        session = OnnxFile(path, 2)
        logits = session.dev_logits(features)
        report = report_for(task, labels, keras_logits, logits, quantized=quantized)
        lat = {2: session.latency_ms(args.runs), 1: OnnxFile(path, 1).latency_ms(args.runs)}
        result = ExportResult(path, "float32" if not quantized else "dynamic int8 (onnxruntime QInt8)",
                              os.path.getsize(path), {}, SEQ, ())
        row = harness.litert_row(variant, tags, "baseline", result, report, task.name, macs, params, peak, lat[2],
                                 lat[1])
        row.update(runtime="onnxruntime", format="onnx", dev_examples=len(dev), onnx_attempts=attempts, file=path,
                   onnx_ops=session.op_types(path), **accuracy_extra(task, labels, keras_logits, logits))
        row["notes"] = ("tflite_mb/tflite_score/gzip_mb are the ONNX file's size and its dev score under onnxruntime. "
                        + ("Float ONNX reference row (not a BENCHMARKS.md tag): checked against Keras logits."
                           if not quantized else
                           "onnxruntime.quantization.quantize_dynamic(float ONNX, weight_type=QuantType.QInt8), "
                           "defaults otherwise (per_channel=False, no pre-processing)."
                           if variant == "onnxruntime-int8" else
                           "onnxruntime.quantization.quantize_dynamic(float ONNX, weight_type=QuantType.QInt8, "
                           "per_channel=True): per-output-channel weight scales (as LiteRT's dynamic range uses), "
                           "no pre-processing."))
        print(f"[bench] {variant}: {report.summary()} | {row['tflite_mb']} MB, {row['latency_ms']} ms", flush=True)
        rows.append(row)
        save()
    print(harness.markdown_table(rows), flush=True)
    return 0


def row_file(row: dict, work: str) -> str:
    """The file a row measured (rows written before `file` was recorded: derived from how they were named)."""
    from tfbertopt.bench.retime import model_path

    if row.get("file"):
        return row["file"]
    if row["variant"] == "converter-default":
        index = next(i for i, a in enumerate(row["attempts"]) if a["route"] == row["route"])
        return os.path.join(work, f"converter_default_{index}.tflite")
    if row.get("runtime") == "onnxruntime":
        return os.path.join(work, {"onnx-float32": "model_float32.onnx", "onnxruntime-int8": "model_dynamic_int8.onnx",
                                   "onnxruntime-int8-per-channel": "model_dynamic_int8_per_channel.onnx"}[row["variant"]])
    return model_path(row, work)


def retime(out: str, work: str, passes: int, runs: int) -> int:
    """Every row's file timed back to back at 2 and 1 threads in `passes` round-robin passes; a row keeps its
    fastest pass (load from other processes only slows a pass down), all passes are recorded."""
    import json

    with open(out) as f:
        doc = json.load(f)
    rows = [r for r in doc["rows"] if r.get("latency_ms") is not None]
    log(f"retime: int8 peak, then {len(rows)} files back to back, {passes} passes")
    peak = latency.int8_peak_gmacs(num_threads=2)
    log(f"int8 peak {peak:.0f} GMAC/s (2 threads)")
    timers = {}
    for row in rows:
        path = row_file(row, work)
        for t in (2, 1):
            if row.get("runtime") == "onnxruntime":
                timers[row["variant"], t] = OnnxFile(path, t).latency_ms
            else:
                timers[row["variant"], t] = LiteRTFile(path, t, ["token_ids", "padding_mask", "segment_ids"]).latency_ms
    samples = {key: [] for key in timers}
    for i in range(passes):
        for key, timer in timers.items():
            samples[key].append(timer(runs))
        log(f"pass {i + 1}/{passes}: " + ", ".join(f"{v} {samples[v, 2][-1]:.2f} ms" for v in
                                                  dict.fromkeys(k[0] for k in timers)))
    for row in rows:
        v = row["variant"]
        row["latency_ms_first_run"] = row["latency_ms"]
        row["latency_ms"], row["latency_ms_1thread"] = round(min(samples[v, 2]), 3), round(min(samples[v, 1]), 3)
        row["latency_ms_passes"] = [round(x, 3) for x in samples[v, 2]]
        row["latency_ms_1thread_passes"] = [round(x, 3) for x in samples[v, 1]]
        row["peak_share"] = round(row["macs"] / (row["latency_ms"] / 1e3) / (peak * 1e9), 4)
    harness.rewrite_results(
        out, doc, peak, int8_peak_gmacs_first_run=doc["int8_peak_gmacs"],
        retimed={"command": command_line(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                 "how": f"every file timed back to back after the run, {passes} round-robin passes (each the "
                        f"median of {runs} runs after {WARMUP} warm-up runs per file and thread count); a "
                        f"row's latency is its fastest pass (all in latency_ms_passes), the first run's in "
                        f"latency_ms_first_run"})
    print(harness.markdown_table(doc["rows"]), flush=True)
    return 0


if __name__ == "__main__":
    with contextlib.suppress(BrokenPipeError):
        sys.exit(main())
