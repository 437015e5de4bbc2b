"""CPU latency of LiteRT models and this machine's LiteRT int8 matmul peak.

Latency is batch 1, median of `runs` timed invocations after `warmup` untimed ones, with the thread count asked.
The int8 peak is measured the same way on a stack of large full-integer FULLY_CONNECTED layers, so that
`peak_share = macs / latency / peak` says how close a model runs to what this CPU can do in int8.

Example:

>>> from tfbertopt.bench.latency import int8_peak_gmacs
>>> int8_peak_gmacs(num_threads=1, runs=3, size=128) > 0
True
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time

import numpy as np


def serving_inputs(runner, seed: int = 0) -> dict:
    """Batch-1 inputs for a serving signature runner: small token ids, a full padding mask, segment 0."""
    rng = np.random.default_rng(seed)
    inputs = {}
    for name, detail in runner.get_input_details().items():
        shape = [d if d > 0 else 1 for d in detail["shape"]]
        if name == "token_ids":
            value = rng.integers(0, 5, size=shape)  # ids inside any BERT vocabulary; cost does not depend on them
        elif name == "padding_mask":
            value = np.ones(shape)
        elif name == "segment_ids":
            value = np.zeros(shape)
        else:
            value = rng.standard_normal(shape)
        inputs[name] = value.astype(detail["dtype"])
    return inputs


def litert_latency_ms(path, num_threads: int = 2, runs: int = 30, warmup: int = 5, seed: int = 0) -> float:
    """Median wall-clock milliseconds per invocation of the model's serving signature, batch 1."""
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=num_threads)
    runner = interpreter.get_signature_runner()
    inputs = serving_inputs(runner, seed)
    for _ in range(warmup):
        runner(**inputs)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner(**inputs)
        times.append((time.perf_counter() - start) * 1e3)
    return float(statistics.median(times))


def int8_peak_gmacs(num_threads: int = 2, runs: int = 20, size: int = 1024, layers: int = 4, rows: int = 128,
                    repeats: int = 5) -> float:
    """GMAC/s of a full-integer int8 LiteRT stack of `layers` (rows x size) @ (size x size) FULLY_CONNECTEDs: the
    fastest of `repeats` medians, since a busy core only slows a measurement down (one median of 20 runs read
    198 or 406 GMAC/s on this 2-core machine from run to run)."""
    import keras
    import tensorflow as tf

    inputs = keras.Input((rows, size), batch_size=1)
    x = inputs
    for _ in range(layers):
        x = keras.layers.Dense(size, use_bias=True)(x)
    model = keras.Model(inputs, x)
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(8):
            yield [rng.standard_normal((1, rows, size)).astype(np.float32)]

    with tempfile.TemporaryDirectory() as tmp:
        archive = keras.export.ExportArchive()
        archive.track(model)
        archive.add_endpoint("serving_default", lambda x: model(x),
                             input_signature=[tf.TensorSpec((1, rows, size), tf.float32, name="x")])
        archive.write_out(tmp, verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
        path = os.path.join(tmp, "peak.tflite")
        with open(path, "wb") as f:
            f.write(converter.convert())
        ms = min(litert_latency_ms(path, num_threads=num_threads, runs=runs) for _ in range(max(1, repeats)))
    macs = rows * size * size * layers
    return macs / (ms / 1e3) / 1e9
