"""Rewrites a .tflite file's constant-table GATHERs as EMBEDDING_LOOKUPs, the lookup op LiteRT's weight quantizers
(ai-edge-quantizer) can store in int4 with a scale per row.

TensorFlow's converter writes `tf.gather(table, ids)` as GATHER, which ai-edge-quantizer leaves in float; its
dynamic and weight-only recipes quantize EMBEDDING_LOOKUP instead. EMBEDDING_LOOKUP takes 1-D int32 ids and
returns one table row per id, so each GATHER(table, ids[..., S]) becomes

    RESHAPE(ids -> [-1])  ->  EMBEDDING_LOOKUP(ids, table)  ->  RESHAPE(-> [-1, ..., S, E])

with the same output tensor. Only tables that are constant 2-D float32 buffers gathered along axis 0 with int32 ids
and static non-batch dimensions qualify; every other GATHER (e.g. DeBERTa's relative-position gathers of computed
tensors) is left as it is.

Example:

>>> import numpy as np, tensorflow as tf
>>> table = tf.constant(np.arange(12, dtype=np.float32).reshape(6, 2))
>>> fn = tf.function(lambda ids: tf.gather(table, ids), input_signature=[tf.TensorSpec([1, 3], tf.int32)])
>>> flat = tf.lite.TFLiteConverter.from_concrete_functions([fn.get_concrete_function()], fn).convert()
>>> rewritten, count = gathers_as_embedding_lookups(flat)
>>> count
1
>>> interpreter = tf.lite.Interpreter(model_content=rewritten)
>>> interpreter.allocate_tensors()
>>> interpreter.set_tensor(interpreter.get_input_details()[0]["index"], np.array([[5, 0, 2]], np.int32))
>>> interpreter.invoke()
>>> interpreter.get_tensor(interpreter.get_output_details()[0]["index"]).tolist()
[[[10.0, 11.0], [0.0, 1.0], [4.0, 5.0]]]
"""

from __future__ import annotations

import numpy as np
from tensorflow.lite.python import schema_py_generated as schema
from tensorflow.lite.tools import flatbuffer_utils


def _opcode_index(model, builtin: int) -> int:
    for i, code in enumerate(model.operatorCodes):
        if max(code.builtinCode, code.deprecatedBuiltinCode) == builtin:
            return i
    code = schema.OperatorCodeT()
    code.builtinCode = builtin
    code.deprecatedBuiltinCode = min(builtin, 127)
    code.version = 1
    model.operatorCodes.append(code)
    return len(model.operatorCodes) - 1


def _add_tensor(model, subgraph, name: str, shape, dtype: int, data: bytes | None = None) -> int:
    tensor = schema.TensorT()
    tensor.name = name.encode()
    tensor.shape = np.asarray(shape, np.int32)
    tensor.type = dtype
    buffer = schema.BufferT()
    if data is not None:
        buffer.data = np.frombuffer(data, np.uint8)
    model.buffers.append(buffer)
    tensor.buffer = len(model.buffers) - 1
    subgraph.tensors.append(tensor)
    return len(subgraph.tensors) - 1


def _reshape(model, subgraph, source: int, target: int, new_shape) -> schema.OperatorT:
    shape = np.asarray(new_shape, np.int32)
    shape_tensor = _add_tensor(model, subgraph, f"{subgraph.tensors[target].name.decode()}/shape", [len(shape)],
                               schema.TensorType.INT32, shape.tobytes())
    op = schema.OperatorT()
    op.opcodeIndex = _opcode_index(model, schema.BuiltinOperator.RESHAPE)
    op.inputs = np.asarray([source, shape_tensor], np.int32)
    op.outputs = np.asarray([target], np.int32)
    op.builtinOptionsType = schema.BuiltinOptions.ReshapeOptions
    op.builtinOptions = schema.ReshapeOptionsT()
    op.builtinOptions.newShape = shape
    return op


def _static_dims(tensor) -> list[int]:
    signature = tensor.shapeSignature if tensor.shapeSignature is not None else tensor.shape
    return [int(d) for d in signature]


def _qualifies(model, subgraph, op) -> bool:
    table, ids = (subgraph.tensors[i] for i in op.inputs[:2])
    options = op.builtinOptions
    axis = getattr(options, "axis", 0) if options is not None else 0
    batch_dims = getattr(options, "batchDims", 0) if options is not None else 0
    data = model.buffers[table.buffer].data
    return (table.type == schema.TensorType.FLOAT32 and data is not None and len(data) > 0 and len(table.shape) == 2
            and axis == 0 and batch_dims == 0 and ids.type == schema.TensorType.INT32 and len(ids.shape) >= 1
            and all(d > 0 for d in _static_dims(ids)[1:]))


def gathers_as_embedding_lookups(flatbuffer: bytes) -> tuple[bytes, int]:
    """Returns (the rewritten flatbuffer, how many GATHERs became EMBEDDING_LOOKUPs); see the module docstring."""
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    gather = next((i for i, c in enumerate(model.operatorCodes)
                   if max(c.builtinCode, c.deprecatedBuiltinCode) == schema.BuiltinOperator.GATHER), None)
    if gather is None:
        return bytes(flatbuffer), 0
    count = 0
    for subgraph in model.subgraphs:
        operators = []
        for op in subgraph.operators:
            if op.opcodeIndex != gather or not _qualifies(model, subgraph, op):
                operators.append(op)
                continue
            table_index, ids_index = int(op.inputs[0]), int(op.inputs[1])
            output = int(op.outputs[0])
            ids_dims = _static_dims(subgraph.tensors[ids_index])
            rows_dim = int(subgraph.tensors[table_index].shape[1])
            name = subgraph.tensors[output].name.decode()
            dynamic = any(d < 0 for d in ids_dims)
            count_now = int(np.prod(np.abs(ids_dims)))   # the interpreter's allocation shape; -1 stays -1 below
            flat_ids = _add_tensor(model, subgraph, f"{name}/ids", [count_now], schema.TensorType.INT32)
            rows = _add_tensor(model, subgraph, f"{name}/rows", [count_now, rows_dim], schema.TensorType.FLOAT32)
            if dynamic:
                subgraph.tensors[flat_ids].shapeSignature = np.asarray([-1], np.int32)
                subgraph.tensors[rows].shapeSignature = np.asarray([-1, rows_dim], np.int32)
            lookup = schema.OperatorT()
            lookup.opcodeIndex = _opcode_index(model, schema.BuiltinOperator.EMBEDDING_LOOKUP)
            lookup.inputs = np.asarray([flat_ids, table_index], np.int32)
            lookup.outputs = np.asarray([rows], np.int32)
            operators += [_reshape(model, subgraph, ids_index, flat_ids, [-1]), lookup,
                          _reshape(model, subgraph, rows, output, [-1, *ids_dims[1:], rows_dim])]
            count += 1
        subgraph.operators = operators
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model)), count
