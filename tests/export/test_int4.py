"""int4 export: constant-table GATHERs rewritten exactly, every kernel and table stored as int4, quantization-aware
int4 kernels and tables stored exactly, the even input widths XNNPACK needs for int4 kernels, and a missing quantizer
named in one line."""

import sys

import numpy as np
import pytest
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils

from tfbertopt.data.demo import demo_examples, demo_vocabulary
from tfbertopt.data.pipeline import encode
from tfbertopt.export.embedding_lookup import gathers_as_embedding_lookups
from tfbertopt.export.litert import ExportError, export_litert, op_counts
from tfbertopt.export.op_report import op_report
from tfbertopt.factorization import factorize_embeddings
from tfbertopt.export.verify import run_litert
from tfbertopt.kernels import find_kernels
from tfbertopt.models import tiny_bert_classifier
from tfbertopt.quantization import QuantizationConfig, quantize_model
from tfbertopt.quantizers.fake_quant import channel_axes_of, fake_quant_weight
from tfbertopt.train import predict_logits


def int4_weights_of(path) -> dict:
    """{op kind: [dequantized float weight of each int4 tensor it reads]}, unpacked from the file (two signed
    nibbles per byte, low first; one scale per row of the weight's first axis, or one float16 scale per block of a
    row, from the scales tensor the blockwise details name)."""
    model = flatbuffer_utils.read_model(str(path))
    kinds = {i: flatbuffer_utils.opcode_to_name(model, i) for i in range(len(model.operatorCodes))}
    out = {}
    for graph in model.subgraphs:
        for op in graph.operators:
            for index in op.inputs:
                tensor = graph.tensors[index]
                if index < 0 or tensor.type != schema.TensorType.INT4:
                    continue
                packed = np.asarray(model.buffers[tensor.buffer].data, np.uint8)
                nibbles = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(-1)[:int(np.prod(tensor.shape))]
                values = np.where(nibbles >= 8, nibbles.astype(np.int32) - 16, nibbles).reshape(tensor.shape)
                details = tensor.quantization.details
                if details is not None and hasattr(details, "blockSize"):
                    scales = graph.tensors[details.scales]
                    scales = np.frombuffer(np.asarray(model.buffers[scales.buffer].data, np.uint8).tobytes(),
                                           np.float16).astype(np.float32).reshape(scales.shape)
                    blocks = values.reshape(tensor.shape[0], -1, details.blockSize)
                    weight = (blocks * scales[..., None]).reshape(tensor.shape)
                else:
                    scale = np.asarray(tensor.quantization.scale, np.float32)
                    weight = values * scale.reshape(-1, *[1] * (len(tensor.shape) - 1))
                out.setdefault(kinds[op.opcodeIndex], []).append(weight)
    return out


def projections(model):
    """[(path, kernel, its output-channel axes)] of the attention, FFN, pooler and head kernels (LiteRT's
    FULLY_CONNECTED weights)."""
    out = []
    for ref in find_kernels(model):
        kernel = np.asarray(ref.variable, np.float32)
        if kernel.ndim >= 2 and "embedding" not in ref.path:
            equation = getattr(ref.layer, "equation", None)
            out.append((ref.path, kernel, channel_axes_of(equation) if equation else (kernel.ndim - 1,)))
    return out


def stored_as(stored, expected, atol) -> bool:
    """Whether one of the `stored` weights is `expected` times a constant, to `atol` (times that constant): the
    converter folds attention's 1/sqrt(head dim) query scaling into the query kernel, which keeps a grid a grid."""
    for w in stored:
        if w.shape == expected.shape:
            c = float((w * expected).sum() / max(float((expected * expected).sum()), 1e-30))
            if c > 0 and np.all(np.abs(w - c * expected) <= c * atol):
                return True
    return False


def as_fully_connected(kernel, axes) -> np.ndarray:
    """A Keras kernel as LiteRT's (output channels, inputs) weight matrix."""
    outputs = int(np.prod([kernel.shape[a] for a in axes]))
    return kernel.reshape(-1, outputs).T


@pytest.fixture(scope="module")
def float_file(shared_classifier, tmp_path_factory):
    return export_litert(shared_classifier, tmp_path_factory.mktemp("int4") / "m.tflite", "float32",
                         sequence_length=16)


def test_gathers_become_embedding_lookups_bit_exactly(shared_classifier, float_file, demo_data):
    _, dev = demo_data
    flat = open(float_file.path, "rb").read()
    rewritten, count = gathers_as_embedding_lookups(flat)
    before, after = op_counts(flat), op_counts(rewritten)
    assert count == before["GATHER"] == after["EMBEDDING_LOOKUP"] == 2     # the token and segment tables
    assert "GATHER" not in after
    path = float_file.path.replace(".tflite", "_lookups.tflite")
    open(path, "wb").write(rewritten)
    features = encode(dev.texts, shared_classifier.preprocessor)
    np.testing.assert_array_equal(run_litert(path, features), run_litert(float_file.path, features))


@pytest.mark.parametrize("quantization", ["int4", "int4-block32"])
def test_every_kernel_and_table_is_int4(shared_classifier, tmp_path, quantization):
    result = export_litert(shared_classifier, tmp_path / f"m_{quantization}.tflite", quantization,
                           sequence_length=16)
    int4 = int4_weights_of(result.path)
    assert len(int4["FULLY_CONNECTED"]) == result.ops["FULLY_CONNECTED"]     # every projection, pooler and head
    assert len(int4["EMBEDDING_LOOKUP"]) == 2                 # the token and segment tables
    assert "GATHER" not in result.ops and not [op for op in result.ops if op.startswith("Flex")]
    dynamic = export_litert(shared_classifier, tmp_path / "m_dynamic.tflite", "dynamic", sequence_length=16)
    assert result.size_bytes < dynamic.size_bytes


def weight_types(path) -> dict:
    """{op kind: sorted set of the type names of its constant (buffer-backed) inputs}."""
    model = flatbuffer_utils.read_model(str(path))
    names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    out = {}
    for graph in model.subgraphs:
        for op in graph.operators:
            for index in op.inputs:
                tensor = graph.tensors[index] if index >= 0 else None
                if tensor is not None and model.buffers[tensor.buffer].data is not None and len(tensor.shape) >= 2:
                    out.setdefault(flatbuffer_utils.opcode_to_name(model, op.opcodeIndex), set()).add(names[tensor.type])
    return out


def test_dynamic_int4_tables_keeps_int8_kernels_and_halves_the_tables(shared_classifier, tmp_path, demo_data):
    _, dev = demo_data
    result = export_litert(shared_classifier, tmp_path / "m_dynamic-int4-tables.tflite", "dynamic-int4-tables",
                           sequence_length=16)
    types = weight_types(result.path)
    assert types["FULLY_CONNECTED"] == {"INT8"} and types["EMBEDDING_LOOKUP"] == {"INT4"}
    assert len(int4_weights_of(result.path)["EMBEDDING_LOOKUP"]) == 2
    dynamic = export_litert(shared_classifier, tmp_path / "m_dynamic.tflite", "dynamic", sequence_length=16)
    int4 = export_litert(shared_classifier, tmp_path / "m_int4.tflite", "int4", sequence_length=16)
    assert int4.size_bytes < result.size_bytes < dynamic.size_bytes
    features = encode(dev.texts, shared_classifier.preprocessor)
    diff = np.abs(run_litert(result.path, features) - predict_logits(shared_classifier, features)).max()
    assert diff < 0.1, diff


def test_post_training_int4_rounds_each_kernel_to_its_channel_grid(shared_classifier, tmp_path):
    result = export_litert(shared_classifier, tmp_path / "m_int4.tflite", "int4", sequence_length=16)
    stored = int4_weights_of(result.path)["FULLY_CONNECTED"]
    for path, kernel, axes in projections(shared_classifier):
        kernel = as_fully_connected(kernel, axes)
        step = np.abs(kernel).max(axis=1, keepdims=True) / 7
        assert stored_as(stored, kernel, 0.6 * step), path   # half a step, and the fitted constant's error


@pytest.mark.parametrize("target, factorized", [("int4", False), ("int4-block32", False), ("int4", True)])
def test_quantization_aware_int4_kernels_are_stored_exactly(tiny_classifier, tmp_path, target, factorized):
    train = demo_examples("train", 32)
    config = QuantizationConfig.for_export(target)
    assert config.export_target == target
    source = factorize_embeddings(tiny_classifier, 8) if factorized else tiny_classifier
    model = quantize_model(source, config)
    result = export_litert(model, tmp_path / f"qat_{target}.tflite", target, sequence_length=16)
    stored = int4_weights_of(result.path)["FULLY_CONNECTED"]
    kernels = projections(model)
    if factorized:      # the E x H projection after the token lookup is a FULLY_CONNECTED too, trained on its grid
        projection = model.backbone.embedding_projection
        kernel = np.asarray(projection.kernel)
        kernels.append(("embedding_projection/kernel", kernel, (1,)))
        x = np.random.default_rng(0).normal(size=(1, 3, kernel.shape[0])).astype("float32")
        grid = np.asarray(fake_quant_weight(kernel, (1,), 4, config.weight_block_size), np.float32)
        assert np.allclose(np.asarray(projection(x)), x @ grid, atol=1e-5)
        assert not np.allclose(x @ grid, x @ kernel, atol=1e-5)
    for path, kernel, axes in kernels:
        grid = np.asarray(fake_quant_weight(kernel, axes, 4, config.weight_block_size), np.float32)
        grid = as_fully_connected(grid, axes)
        # The converter folds 1/sqrt(head size) into the query kernel; blockwise scales, kept at bfloat16 precision,
        # then round again (the integers stay the same: 7 x 2^-8 is under half a step).
        folded = config.weight_block_size is not None and path.endswith("query/kernel")
        assert stored_as(stored, grid, 2 ** -8 * np.abs(grid).max() if folded else 1e-6), path
    features = encode(train.texts, model.preprocessor)
    diff = np.abs(run_litert(result.path, features) - predict_logits(model, features)).max()
    assert diff < 0.05, diff     # only the on-the-fly activation quantization differs


@pytest.mark.parametrize("svd", [False, True])
def test_learned_int4_scales_are_stored_exactly(tiny_classifier, tmp_path, svd):
    """learned_weight_scales: every kernel starts at its least-squares clip (closer to the float kernel than the
    max-abs grid), and the file stores the clipped grid exactly, SVD factor pairs included."""
    import dataclasses

    from tfbertopt.factorization import factorize
    from tfbertopt.layers import QuantizedEinsumDense, QuantizedLowRankEinsumDense

    train = demo_examples("train", 32)
    config = dataclasses.replace(QuantizationConfig.for_export("int4"), learned_weight_scales=True)
    source = factorize(tiny_classifier, rank=8, roles=["ffn_intermediate"]) if svd else tiny_classifier
    model = quantize_model(source, config)
    grids, closer = [], []
    for layer in model._flatten_layers():
        if not isinstance(layer, (QuantizedEinsumDense, QuantizedLowRankEinsumDense)):
            continue
        for kernel, axes, ratio in layer.kernel_grids():
            kernel, ratio = np.asarray(kernel), np.asarray(ratio)
            assert np.all((ratio >= 0.3) & (ratio <= 1.0))
            grid = np.asarray(fake_quant_weight(kernel, axes, 4, clip_ratio=ratio), np.float32)
            error = lambda q: float(((np.asarray(q) - kernel) ** 2).sum())   # noqa: E731
            closer.append(error(grid) <= error(fake_quant_weight(kernel, axes, 4)))
            grids.append((as_fully_connected(grid, axes), ratio.min() < 1))
    assert len(grids) == len(projections(source)) - 1     # every kernel but the head's (a Dense outside the backbone)
    assert all(closer) and any(c for _, c in grids)
    result = export_litert(model, tmp_path / "learned_int4.tflite", "int4", sequence_length=16)
    stored = int4_weights_of(result.path)["FULLY_CONNECTED"]
    for grid, _ in grids:
        assert stored_as(stored, grid, 1e-6)
    features = encode(train.texts, model.preprocessor)
    diff = np.abs(run_litert(result.path, features) - predict_logits(model, features)).max()
    assert diff < 0.05, diff     # only the on-the-fly activation quantization differs


@pytest.mark.parametrize("target", ["int4", "int4-block32", "dynamic-int4-tables"])
def test_quantization_aware_tables_are_stored_exactly(tiny_classifier, tmp_path, target):
    train = demo_examples("train", 32)
    config = QuantizationConfig.for_export(target)
    assert config.export_target == target and config.table_bits == 4
    model = quantize_model(tiny_classifier, config)
    backbone = model.backbone
    tables = [np.asarray(fake_quant_weight(layer.embeddings, (0,), 4, config.weight_block_size), np.float32)
              for layer in (backbone.token_embedding, backbone.segment_embedding)]
    features = encode(train.texts, model.preprocessor)
    ids = features["token_ids"][:2]
    assert np.allclose(np.asarray(backbone.token_embedding(ids)), tables[0][ids])    # training sees the grid
    result = export_litert(model, tmp_path / f"qat_{target}.tflite", target, sequence_length=16)
    stored = int4_weights_of(result.path)["EMBEDDING_LOOKUP"]
    for table in tables:
        assert any(w.shape == table.shape and np.allclose(w, table, rtol=1e-5, atol=1e-7) for w in stored)
    diff = np.abs(run_litert(result.path, features) - predict_logits(model, features)).max()
    assert diff < 0.05, diff     # only the on-the-fly activation quantization differs


def test_int4_model_refuses_the_int8_graph(tiny_classifier, tmp_path):
    model = quantize_model(tiny_classifier, QuantizationConfig.for_export("int4"))
    with pytest.raises(ValueError, match="trained for the 'int4' graph"):
        export_litert(model, tmp_path / "m.tflite", "int8", sequence_length=16, calibration=demo_examples("train", 8))


def test_missing_quantizer_is_one_line(shared_classifier, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ai_edge_quantizer", None)
    with pytest.raises(ExportError, match=r"needs ai-edge-quantizer .*pip install 'tfbertopt\[int4\]'"):
        export_litert(shared_classifier, tmp_path / "m.tflite", "int4", sequence_length=16)


@pytest.mark.parametrize("width, delegated", [(63, False), (64, True)])
def test_int4_kernels_need_even_input_widths_for_xnnpack(width, delegated, tmp_path):
    """Why structured pruning offers `neuron_multiple`: LiteRT's XNNPACK delegate leaves an int4 FULLY_CONNECTED
    whose input width is odd (here the FFN output kernel) to the builtin kernel."""
    model = tiny_bert_classifier(demo_vocabulary(), hidden_dim=32, intermediate_dim=width, sequence_length=16)
    path = tmp_path / "m.tflite"
    export_litert(model, path, "int4", sequence_length=16)
    left = op_report(path).not_delegated.get("FULLY_CONNECTED", 0)
    assert (left == 0) == delegated, f"{left} FULLY_CONNECTED ops left out of XNNPACK at FFN width {width}"
