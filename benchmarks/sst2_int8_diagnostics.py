"""Where full-integer int8 loses on a keras-hub BERT: residual-stream simulations and a LayerNorm trace trial.

    python benchmarks/sst2_int8_diagnostics.py --teacher runs/sst2-teacher-2ep/00_finetune/model.keras \
        --qat-model runs/sst2-quantization-2ep/qat.keras

Calibration: the same 100 SST-2 training sentences as `sst2_quantization.py` (seeded sample of 1000). Rows:

  baseline               the float32 export.
  sim-residual-tensor    Keras fake-quant at the full-integer points (`quantize_model`, calibrated, not trained),
                         residual sums per tensor, as LiteRT's ADD quantizes them.
  sim-residual-channel   the same, with one calibrated range per hidden unit on every residual sum (the idea of
                         per-embedding-group quantization, Bondarenko et al. 2021), which no LiteRT builtin can run.
  sim-residual-float     the same, residual sums left float.
  ptq-int8               full-integer export, tfbertopt's integer trace form (MUL-based LayerNorm).
  ptq-int8-l2norm        full-integer export with every LayerNorm traced as L2_NORMALIZATION, whose int8 kernel
                         sums the squares in int32, so no int8 variance is formed (a trial, not an export option).

Simulation rows have no .tflite (`tflite_score` null); their `label_agreement` is against the float model.
Also written: `residual_ranges`, the calibrated range of every residual sum and, with `--qat-model`, the range that
QAT trained for it.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import numpy as np  # noqa: E402

from tfbertopt.bench import harness, latency  # noqa: E402
from tfbertopt.bench.harness import command_line  # noqa: E402
from tfbertopt.data.glue import load_glue  # noqa: E402
from tfbertopt.data.pipeline import encode  # noqa: E402


def log(message: str) -> None:
    print(f"[sst2_int8_diagnostics {time.strftime('%H:%M:%S')}] {message}", flush=True)


@contextlib.contextmanager
def l2_normalization_layer_norm():
    """Within the block, integer traces write LayerNorm as `l2_normalize(x - mean) * sqrt(H) * gamma + beta`.

    `x + mean * -1` (an ADD) instead of `x - mean`: the converter fuses `square(x - mean)` into SQUARED_DIFFERENCE
    before it can match its L2_NORMALIZATION pattern.
    """
    import tensorflow as tf
    from keras import ops

    from tfbertopt.export import integer_tracing

    def call(self, inputs):
        x = ops.cast(inputs, "float32")
        centered = x + ops.mean(x, axis=self.axis, keepdims=True) * -1.0
        h = int(x.shape[-1])
        outputs = tf.math.l2_normalize(centered, axis=-1, epsilon=h * self.epsilon) * (h ** 0.5 * self.gamma)
        if self.beta is not None:
            outputs = outputs + self.beta
        return ops.cast(outputs, self.compute_dtype)

    original = integer_tracing._layer_norm_call
    integer_tracing._layer_norm_call = call
    try:
        yield
    finally:
        integer_tracing._layer_norm_call = original


def per_channel_residuals(model, calibration_features):
    """Turns the model's residual-sum quantizers into per-channel ones, ranged on `calibration_features`."""
    import tensorflow as tf

    from tfbertopt.layers.activation_quantizer import ActivationQuantizer
    from tfbertopt.quantization.qat import activation_quantizers
    from tfbertopt.train import predict_logits

    class PerChannel(ActivationQuantizer):
        recording = True

        def call(self, inputs, training=None):
            x = tf.cast(inputs, tf.float32)
            axes = tuple(range(len(x.shape) - 1))
            if PerChannel.recording:
                lo, hi = tf.reduce_min(x, axes).numpy(), tf.reduce_max(x, axes).numpy()
                self.channel_lo = np.minimum(getattr(self, "channel_lo", lo), lo)
                self.channel_hi = np.maximum(getattr(self, "channel_hi", hi), hi)
                return inputs
            lo = np.minimum(self.channel_lo, 0.0)
            hi = np.maximum(self.channel_hi, lo + 1e-6)
            return tf.cast(tf.quantization.fake_quant_with_min_max_vars_per_channel(x, lo, hi), inputs.dtype)

    residual = [q for path, q in activation_quantizers(model).items() if "residual" in path]
    for q in residual:
        q.__class__ = PerChannel
    predict_logits(model, calibration_features)      # eager: records the per-channel extremes
    PerChannel.recording = False
    return len(residual)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--teacher", default="runs/sst2-teacher-2ep/00_finetune/model.keras")
    parser.add_argument("--qat-model", default=None, help="a full-integer QAT model whose trained ranges to record")
    parser.add_argument("--data-dir", default="../shared/data/glue")
    parser.add_argument("--out", default="benchmarks/results/sst2_int8_diagnostics.json")
    parser.add_argument("--work", default="runs/sst2-int8-diagnostics")
    parser.add_argument("--runs", type=int, default=30, help="timed LiteRT runs per exported variant")
    args = parser.parse_args(argv)

    from keras.saving import load_model

    from tfbertopt.quantization import activation_ranges, quantize_model
    from tfbertopt.quantization.config import DEFAULT_POINTS, QuantizationConfig
    from tfbertopt.quantization.qat import _calibration_features
    from tfbertopt.train import predict_logits

    train = load_glue("sst2", "train", data_dir=args.data_dir)
    dev = load_glue("sst2", "dev", data_dir=args.data_dir)
    order = np.random.default_rng(0).permutation(len(train))
    calibration = train._select(order[:1000])     # export_litert / quantize_model sample 100 of these
    os.makedirs(args.work, exist_ok=True)
    teacher = load_model(args.teacher, compile=False)
    features = encode(dev.texts, teacher.preprocessor)
    float_labels = predict_logits(teacher, features).argmax(-1)
    peak = latency.int8_peak_gmacs(num_threads=2)
    log(f"int8 peak {peak:.0f} GMAC/s; teacher {args.teacher}")
    rows, extra = [], {"data": dev.source, "teacher": args.teacher, "calibration": "100 SST-2 train sentences"}
    command = command_line()

    def write():
        harness.write_results(args.out, "sst2_int8_diagnostics", command, rows, peak, extra=extra)

    def exported(variant, tags, extra_fields=None):
        log(f"{variant}: export, verify, time")
        rows.append(harness.measure_variant(
            teacher, variant, tags, None if variant == "baseline" else "baseline", dev, args.work, peak,
            quantization="float32" if variant == "baseline" else "int8", runs=args.runs, features=features,
            calibration=calibration, extra=extra_fields))
        write()

    def simulated(variant, model, description):
        labels = predict_logits(model, features).argmax(-1)
        rows.append({"task": "sst2", "variant": variant, "tags": ["ptq-int8"], "baseline": "baseline",
                     "metric": "accuracy", "keras_score": round(float(np.mean(labels == dev.labels)), 4),
                     "tflite_score": None, "label_agreement": round(float(np.mean(labels == float_labels)), 4),
                     "simulation": description, "dev_examples": len(dev)})
        log(f"{variant}: {rows[-1]['keras_score']} ({rows[-1]['label_agreement']} agreement with float)")
        write()

    exported("baseline", ["baseline", "teacher", "finetune"])
    model = quantize_model(teacher, calibration=calibration)
    ranges = {p: r for p, r in activation_ranges(model).items() if "residual" in p}
    simulated("sim-residual-tensor", model, "full-integer points, calibrated, residual sums per tensor")
    added = per_channel_residuals(model, _calibration_features(model, calibration, 100))
    simulated("sim-residual-channel", model, f"as sim-residual-tensor, {added} residual sums per channel")
    del model
    no_residual = QuantizationConfig(points=tuple(p for p in DEFAULT_POINTS if p != "residual"))
    simulated("sim-residual-float", quantize_model(teacher, no_residual, calibration=calibration),
              "as sim-residual-tensor, residual sums float")
    trained = activation_ranges(load_model(args.qat_model, compile=False)) if args.qat_model else {}
    extra["residual_ranges"] = {p: {"calibrated": [round(lo, 2), round(hi, 2)],
                                    **({"qat": [round(v, 2) for v in trained[p]]} if p in trained else {})}
                                for p, (lo, hi) in sorted(ranges.items())}
    if args.qat_model:
        extra["qat_model"] = args.qat_model
    exported("ptq-int8", ["ptq-int8"], {"layer_norm_trace": "integer form (SUB/MUL/MEAN/RSQRT)"})
    with l2_normalization_layer_norm():
        exported("ptq-int8-l2norm", ["ptq-int8"], {"layer_norm_trace": "L2_NORMALIZATION"})
    print(harness.markdown_table([r for r in rows if r.get("tflite_score") is not None]), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
