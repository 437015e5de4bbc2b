"""TFLite model metadata for MediaPipe Tasks: a tfbertopt .tflite that `TextClassifier` loads and feeds raw strings.

`write_metadata(tflite_path, model_or_preprocessor, labels)` embeds the standard TFLite metadata (schema
"M001", buffer "TFLITE_METADATA") into a file written by `tfbertopt.export.litert.export_litert`, and zips the
associated files onto the end of the model as the metadata spec does (a .tflite with metadata is also a zip):

- `vocab.txt`: the keras-hub tokenizer's WordPiece vocabulary (`VOCABULARY`), referenced by a
  `BertTokenizerOptions` input process unit;
- input tensor metadata named `ids`, `mask`, `segment_ids`, in the order of the subgraph's inputs, read from
  their tensor names: for tfbertopt exports that is `segment_ids, token_ids, padding_mask`, neither the
  alphabetical order of the signature runner nor the `ids, mask, segment_ids` order of Model Maker files;
- `labels.txt` (`TENSOR_AXIS_LABELS`) on the `probabilities` output, which becomes the model's only output.

What MediaPipe's BERT text classifier does with such a file (mediapipe/calculators/tensor/
bert_preprocessor_calculator.cc and tasks/cc/components/processors/classification_postprocessing_graph.cc): it
needs exactly three int32 inputs of shape (1, L) and finds which is which by the *metadata* names, positionally
matched to the subgraph inputs; it lower-cases the text with `AsciiStrToLower` whatever the tokenizer, tokenizes
with the vocabulary, writes `[CLS] tokens [SEP]` truncated to L, mask 1 on those, segment ids 0 and id 0 as
padding. Every subgraph output is a classification head, and the head's scores are the raw tensor values: no
softmax and no calibration unless the metadata adds a `ScoreCalibrationOptions` unit (it is for sigmoid-style
per-class scores, not used here). A 2-class output is two categories like any other. So the head must be the
softmax `probabilities`; the `logits` output is dropped from the subgraph's outputs (it stays computed inside).

Known difference: keras-hub's uncased WordPiece strips accents (NFD, marks removed), MediaPipe's does not, so an
accented sentence such as "how do you spell cliché ?" can change its label (measured on SST-2 dev:
benchmarks/results/sst2_mediapipe.json). `mediapipe_text` normalizes a string
the way keras-hub does; an app should do the same before `classify()`.

The file no longer has the `logits` output: verify it with `verify_litert` before writing metadata, or compare
probabilities (`run_probabilities`).

Validation, before anything is written (`MetadataError`): one subgraph; three int32 inputs of one static shape
(1, L) whose names identify token ids, padding mask and segment ids (a model without segment ids, e.g.
DistilBERT, cannot be fed by MediaPipe's BERT preprocessor); a float32 `probabilities` output whose size equals the
number of labels; a WordPiece tokenizer that lower-cases (MediaPipe always lower-cases) with `[CLS]`, `[SEP]` and
`[UNK]` in its vocabulary. Then the model is run the way MediaPipe feeds it (positional tensors, as the metadata
says) on a probe sentence: outputs that are not finite or probabilities that do not sum to 1 refuse the file
(the all-NaN export of a model whose weights were never embedded, see `tfbertopt.export.litert`), and when a Keras
model is given its probabilities must match within `max_score_diff`.

Writing needs the flatbuffers classes of the metadata schema: `mediapipe` ships them
(`mediapipe.tasks.metadata.metadata_schema_py_generated`, `pip install mediapipe`), so does `tflite-support`.
Reading and validating do not.

Example (the input layout MediaPipe will see, without mediapipe installed):

>>> import os, tempfile
>>> from tfbertopt.models import tiny_bert_classifier
>>> from tfbertopt.export.litert import export_litert
>>> from tfbertopt.export.metadata import mediapipe_input_layout
>>> clf = tiny_bert_classifier(["good", "bad"], sequence_length=16)
>>> path = export_litert(clf, os.path.join(tempfile.mkdtemp(), "m.tflite"), sequence_length=16).path
>>> mediapipe_input_layout(path)
(('segment_ids', 'segment_ids'), ('token_ids', 'ids'), ('padding_mask', 'mask'))
>>> from tfbertopt.export.metadata import check_for_mediapipe
>>> check_for_mediapipe(path, clf, ["negative", "positive"]).sequence_length
16
>>> check_for_mediapipe(path, clf, ["negative", "neutral", "positive"])
Traceback (most recent call last):
...
tfbertopt.export.metadata.MetadataError: 3 labels for a probabilities output of 2 classes
"""

from __future__ import annotations

import dataclasses
import io
import logging
import os
import re
import zipfile

import numpy as np

from tfbertopt.data.pipeline import encode
from tfbertopt.evaluation import predict_logits

logger = logging.getLogger(__name__)

METADATA_NAME = "TFLITE_METADATA"
METADATA_FILE_IDENTIFIER = b"M001"
TFLITE_FILE_IDENTIFIER = b"TFL3"
# BertTokenizerOptions and input_process_units were added in metadata schema 1.1.0.
MIN_PARSER_VERSION = "1.1.0"
# keras-hub feature name -> the metadata tensor name MediaPipe's BertPreprocessorCalculator looks for.
MEDIAPIPE_INPUT_NAMES = {"token_ids": "ids", "padding_mask": "mask", "segment_ids": "segment_ids"}
VOCAB_FILE = "vocab.txt"
LABELS_FILE = "labels.txt"
SPECIAL_TOKENS = ("[CLS]", "[SEP]", "[UNK]")


class MetadataError(ValueError):
    """The .tflite, tokenizer or labels would not work (or would silently give wrong scores) in MediaPipe."""


@dataclasses.dataclass
class MetadataResult:
    path: str | None
    labels: tuple
    vocabulary_size: int
    sequence_length: int
    input_layout: tuple  # ((feature name, metadata name), ...) in subgraph input order
    output_name: str
    probe_probabilities: np.ndarray | None = None


def _model_schema():
    try:
        from tensorflow.lite.python import schema_py_generated as schema
    except ImportError:  # pragma: no cover - ai-edge-litert ships the same module
        from ai_edge_litert import schema_py_generated as schema
    return schema


def _metadata_schema():
    errors = []
    for name in ("mediapipe.tasks.metadata.metadata_schema_py_generated",
                 "tflite_support.metadata_schema_py_generated"):
        try:
            import importlib

            return importlib.import_module(name)
        except ImportError as e:
            errors.append(f"{name}: {e}")
    raise ImportError("writing TFLite metadata needs the metadata schema classes that mediapipe ships: "
                      "pip install mediapipe (" + "; ".join(errors) + ")")


def _read(path_or_bytes) -> bytes:
    if isinstance(path_or_bytes, (bytes, bytearray)):
        return bytes(path_or_bytes)
    with open(path_or_bytes, "rb") as f:
        return f.read()


def _decode(name) -> str:
    return name.decode() if isinstance(name, bytes) else str(name)


def _feature_of(tensor_name: str) -> str | None:
    """'serving_default_token_ids:0' -> 'token_ids' (None when the name says nothing)."""
    hits = [f for f in MEDIAPIPE_INPUT_NAMES if re.search(rf"(^|[_/]){f}(:\d+)?$", tensor_name)]
    return hits[0] if len(hits) == 1 else None


def _io_tensors(buf: bytes):
    schema = _model_schema()
    if len(buf) < 8 or buf[4:8] != TFLITE_FILE_IDENTIFIER:
        raise MetadataError("not a TFLite model (no TFL3 file identifier)")
    model = schema.Model.GetRootAs(buf, 0)
    if model.SubgraphsLength() != 1:
        raise MetadataError(f"MediaPipe text models must have a single subgraph, this one has "
                            f"{model.SubgraphsLength()}")
    sub = model.Subgraphs(0)

    def describe(index):
        t = sub.Tensors(index)
        signature = t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else None
        return {"index": int(index), "name": _decode(t.Name()), "type": t.Type(),
                "shape": tuple(int(d) for d in t.ShapeAsNumpy()),
                "signature": None if signature is None else tuple(int(d) for d in signature)}

    inputs = [describe(sub.Inputs(i)) for i in range(sub.InputsLength())]
    outputs = [describe(sub.Outputs(i)) for i in range(sub.OutputsLength())]
    # Signature output names (the tensor names of outputs are converter-made, e.g. StatefulPartitionedCall:1).
    for s in range(model.SignatureDefsLength()):
        sig = model.SignatureDefs(s)
        for i in range(sig.OutputsLength()):
            o = sig.Outputs(i)
            for out in outputs:
                if out["index"] == o.TensorIndex():
                    out["signature_name"] = _decode(o.Name())
        for i in range(sig.InputsLength()):
            o = sig.Inputs(i)
            for inp in inputs:
                if inp["index"] == o.TensorIndex():
                    inp["signature_name"] = _decode(o.Name())
    return inputs, outputs


def mediapipe_input_layout(path_or_bytes) -> tuple:
    """((feature name, MediaPipe metadata name), ...) for the subgraph's inputs, in the subgraph's order.

    Raises MetadataError when the inputs are not the three int32 BERT inputs MediaPipe feeds."""
    inputs, _ = _io_tensors(_read(path_or_bytes))
    schema = _model_schema()
    if len(inputs) != 3:
        names = [i.get("signature_name", i["name"]) for i in inputs]
        raise MetadataError(
            f"MediaPipe's BERT text classifier feeds exactly 3 int32 inputs (ids, mask, segment_ids); this model "
            f"has {len(inputs)}: {names}" + (" (models without segment_ids, e.g. DistilBERT/RoBERTa, cannot be fed)"
                                              if len(inputs) == 2 else ""))
    layout = []
    for inp in inputs:
        if inp["type"] != schema.TensorType.INT32:
            raise MetadataError(f"input {inp['name']} is not int32 (type {inp['type']}): MediaPipe writes int32 ids, "
                                f"mask and segment ids")
        feature = _feature_of(inp.get("signature_name", "")) or _feature_of(inp["name"])
        if feature is None:
            raise MetadataError(
                f"cannot tell which input {inp['name']!r} is (token ids, padding mask or segment ids): MediaPipe "
                f"matches inputs to metadata by position, so a guess would put ids into the mask. Export with "
                f"tfbertopt.export.litert.export_litert, which names them token_ids/padding_mask/segment_ids")
        layout.append((feature, MEDIAPIPE_INPUT_NAMES[feature]))
    if len({f for f, _ in layout}) != 3:
        raise MetadataError(f"inputs do not name three different features: {layout}")
    return tuple(layout)


def _sequence_length(inputs) -> int:
    lengths = set()
    for inp in inputs:
        shape = inp["signature"] or inp["shape"]
        if len(shape) != 2 or shape[0] != 1:
            raise MetadataError(f"input {inp['name']} has shape {shape}; MediaPipe needs (1, sequence_length): "
                                f"export with a fixed sequence_length (batch 1)")
        if shape[1] < 2:
            raise MetadataError(f"input {inp['name']} has a dynamic or too short length {shape[1]}: export with a "
                                f"fixed sequence_length (e.g. 128), the length MediaPipe pads and truncates to")
        lengths.add(shape[1])
    if len(lengths) != 1:
        raise MetadataError(f"inputs have different lengths {sorted(lengths)}")
    return lengths.pop()


def _tokenizer_of(model_or_preprocessor):
    obj = model_or_preprocessor
    for attr in ("preprocessor", "tokenizer"):
        if getattr(obj, attr, None) is not None and not hasattr(obj, "get_vocabulary"):
            obj = getattr(obj, attr)
    if not hasattr(obj, "get_vocabulary"):
        raise MetadataError(f"{type(model_or_preprocessor).__name__} has no tokenizer with a vocabulary: pass the "
                            f"keras-hub classifier (with its preprocessor), its preprocessor or its tokenizer")
    return obj


def _vocabulary(tokenizer, warn: bool = True) -> list[str]:
    import keras_hub

    if not isinstance(tokenizer, keras_hub.tokenizers.WordPieceTokenizer):
        raise MetadataError(f"{type(tokenizer).__name__} is not a WordPiece tokenizer; MediaPipe's BERT classifier "
                            f"reads WordPiece (BertTokenizerOptions) vocabularies only here")
    if not getattr(tokenizer, "lowercase", False):
        raise MetadataError(
            "the tokenizer keeps case (lowercase=False), but MediaPipe lower-cases every input string before "
            "tokenizing: a cased model would see different tokens than it was trained on. Use an uncased model")
    if getattr(tokenizer, "suffix_indicator", "##") != "##":
        raise MetadataError(f"suffix indicator {tokenizer.suffix_indicator!r}: MediaPipe's WordPiece uses '##'")
    if warn and getattr(tokenizer, "strip_accents", False):
        logger.warning("the tokenizer strips accents and MediaPipe's does not: accented input ('cliché') gets other "
                       "word pieces in MediaPipe; normalize strings with tfbertopt.export.metadata.mediapipe_text "
                       "(NFD, marks removed) before classify()")
    vocab = [str(t) for t in tokenizer.get_vocabulary()]
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise MetadataError(f"vocabulary lacks {missing}: MediaPipe adds [CLS]/[SEP] and maps unknown words to [UNK]")
    bad = [t for t in vocab if "\n" in t or "\r" in t]
    if bad:
        raise MetadataError(f"vocabulary tokens with line breaks cannot go into vocab.txt: {bad[:3]}")
    if len(set(vocab)) != len(vocab):
        raise MetadataError("vocabulary has duplicate tokens: vocab.txt lines would map to the wrong ids")
    return vocab


def _probe_ids(vocab: list[str], tokenizer, length: int) -> tuple[np.ndarray, np.ndarray, str]:
    """Token ids and mask the way MediaPipe builds them, for a sentence made of ordinary vocabulary words."""
    words = [t for t in vocab if t.isalpha() and t.islower()][:6] or [vocab[-1]]
    ids = tokenizer.tokenize(" ".join(words))
    ids = [int(i) for i in np.asarray(ids).reshape(-1)][: length - 2]
    seq = [vocab.index("[CLS]")] + ids + [vocab.index("[SEP]")]
    token_ids = np.zeros((1, length), np.int32)
    token_ids[0, :len(seq)] = seq
    mask = np.zeros((1, length), np.int32)
    mask[0, :len(seq)] = 1
    return token_ids, mask, " ".join(words)


def mediapipe_text(text: str, model_or_tokenizer=None) -> str:
    """`text` with accents stripped the way keras-hub's WordPiece tokenizer strips them (NFD, marks removed).

    MediaPipe's BERT tokenizer lower-cases ASCII only and keeps accents, so an accented word ("cliché") becomes
    other word pieces than the model was trained on; pass strings through this before `classify()` (or do the
    same in the app) when the tokenizer strips accents (`strip_accents`, on for uncased BERT tokenizers).

    >>> mediapipe_text("How do you spell cliché ?")
    'how do you spell cliche ?'
    """
    import unicodedata

    if model_or_tokenizer is not None and not getattr(_tokenizer_of(model_or_tokenizer), "strip_accents", True):
        return text.lower()
    text = unicodedata.normalize("NFD", text.lower())
    return "".join(c for c in text if unicodedata.category(c) != "Mn")


def run_probabilities(path_or_bytes, token_ids, padding_mask, segment_ids=None, layout=None) -> np.ndarray:
    """Runs the .tflite the way MediaPipe does: positional inputs (by `mediapipe_input_layout`, or `layout` to see
    what another metadata order would do), the output named `probabilities` (or the only output). Returns float32
    probabilities of shape (batch, classes)."""
    from ai_edge_litert.interpreter import Interpreter

    buf = _read(path_or_bytes)
    layout = layout or mediapipe_input_layout(buf)
    _, outputs = _io_tensors(buf)
    out = next((o for o in outputs if o.get("signature_name") == "probabilities"), outputs[0] if len(outputs) == 1
               else None)
    if out is None:
        raise MetadataError("no 'probabilities' output")
    token_ids = np.asarray(token_ids, np.int32)
    feeds = {"token_ids": token_ids, "padding_mask": np.asarray(padding_mask, np.int32),
             "segment_ids": np.zeros_like(token_ids) if segment_ids is None else np.asarray(segment_ids, np.int32)}
    interpreter = Interpreter(model_content=buf, num_threads=2)
    interpreter.allocate_tensors()
    details = interpreter.get_input_details()
    rows = []
    for b in range(token_ids.shape[0]):
        for position, (feature, _) in enumerate(layout):
            interpreter.set_tensor(details[position]["index"], feeds[feature][b:b + 1])
        interpreter.invoke()
        rows.append(interpreter.get_tensor(out["index"])[0])
    return np.stack(rows).astype(np.float32)


def check_for_mediapipe(tflite_path, model_or_preprocessor, labels, max_score_diff: float | None = 0.05,
                        output: str = "probabilities") -> MetadataResult:
    """Every check `write_metadata` makes, without writing: raises `MetadataError` on the first problem.

    `max_score_diff`: when a Keras classifier is given, its probabilities on a probe sentence and the file's (run
    as MediaPipe feeds it) may differ by at most this much (None: skip the comparison; finite, normalized outputs
    are always required).
    """
    buf = _read(tflite_path)
    inputs, outputs = _io_tensors(buf)
    layout = mediapipe_input_layout(buf)
    length = _sequence_length(inputs)
    out = [o for o in outputs if o.get("signature_name") == output]
    if not out:
        names = [o.get("signature_name", o["name"]) for o in outputs]
        raise MetadataError(
            f"no output named {output!r} among {names}: MediaPipe takes each output's raw values as the scores "
            f"(no softmax), so it must read softmax probabilities, not logits. Export with export_litert")
    out = out[0]
    if out["type"] != _model_schema().TensorType.FLOAT32:
        raise MetadataError(f"output {output!r} is not float32")
    num_classes = out["shape"][-1]
    labels = tuple(str(label) for label in labels)
    if num_classes < 2:
        raise MetadataError(f"output {output!r} has {num_classes} value(s): a regression model is not a classifier")
    if len(labels) != num_classes:
        raise MetadataError(f"{len(labels)} labels for a probabilities output of {num_classes} classes")
    if any(not label or "\n" in label or "\r" in label for label in labels) or len(set(labels)) != len(labels):
        raise MetadataError(f"labels must be distinct, non-empty, single-line strings: {labels}")
    tokenizer = _tokenizer_of(model_or_preprocessor)
    vocab = _vocabulary(tokenizer)
    backbone = getattr(model_or_preprocessor, "backbone", None)
    if backbone is not None and getattr(backbone, "vocabulary_size", len(vocab)) != len(vocab):
        raise MetadataError(f"tokenizer vocabulary ({len(vocab)}) and model embedding table "
                            f"({backbone.vocabulary_size}) differ: ids would point at the wrong rows")
    token_ids, mask, text = _probe_ids(vocab, tokenizer, length)
    probs = run_probabilities(buf, token_ids, mask)
    if not np.all(np.isfinite(probs)):
        raise MetadataError(
            f"the .tflite gives non-finite scores {probs.tolist()} on a probe sentence fed as MediaPipe feeds it: "
            f"MediaPipe would report NaN. The usual cause is a conversion that left the weights as uninitialised "
            f"variables (converting a tf.function that calls a Keras 3 model); export with "
            f"tfbertopt.export.litert.export_litert")
    if not np.allclose(probs.sum(-1), 1.0, atol=1e-3) or np.any(probs < 0):
        raise MetadataError(f"output {output!r} is not a probability distribution ({probs.tolist()}): MediaPipe "
                            f"would report these raw values as scores")
    if max_score_diff is not None and hasattr(model_or_preprocessor, "backbone"):
        features = encode([(text,)], model_or_preprocessor.preprocessor)
        keras_logits = predict_logits(model_or_preprocessor, features)
        keras_probs = np.exp(keras_logits - keras_logits.max(-1, keepdims=True))
        keras_probs /= keras_probs.sum(-1, keepdims=True)
        diff = float(np.abs(keras_probs - probs).max())
        if diff > max_score_diff:
            raise MetadataError(
                f"fed as MediaPipe feeds it, the .tflite's probabilities differ from the Keras model's by {diff:.3g} "
                f"(> {max_score_diff}) on {text!r}: wrong model, wrong tokenizer, or a sequence length that "
                f"truncates differently")
    return MetadataResult(None, labels, len(vocab), length, layout, output, probs[0])


def _metadata_buffer(md, vocab_size, layout, labels, output, name="", description="", version="1", author="",
                     license_=""):
    import flatbuffers

    vocab_file = md.AssociatedFileT()
    vocab_file.name = VOCAB_FILE
    vocab_file.description = "WordPiece vocabulary of the BERT tokenizer (lower-cased input)."
    vocab_file.type = md.AssociatedFileType.VOCABULARY
    tokenizer_options = md.BertTokenizerOptionsT()
    tokenizer_options.vocabFile = [vocab_file]
    tokenizer_unit = md.ProcessUnitT()
    tokenizer_unit.optionsType = md.ProcessUnitOptions.BertTokenizerOptions
    tokenizer_unit.options = tokenizer_options

    descriptions = {"ids": "Token ids of [CLS] text [SEP], padded with 0.",
                    "mask": "1 for real tokens, 0 for padding.",
                    "segment_ids": "0 for the first (only) sentence."}
    input_metadata = []
    for _, md_name in layout:
        t = md.TensorMetadataT()
        t.name = md_name
        t.description = descriptions[md_name]
        content = md.ContentT()
        content.contentPropertiesType = md.ContentProperties.FeatureProperties
        content.contentProperties = md.FeaturePropertiesT()
        t.content = content
        t.stats = md.StatsT()
        input_metadata.append(t)

    label_file = md.AssociatedFileT()
    label_file.name = LABELS_FILE
    label_file.description = "Class labels, one per line, in output order."
    label_file.type = md.AssociatedFileType.TENSOR_AXIS_LABELS
    out = md.TensorMetadataT()
    out.name = output
    out.description = f"Softmax probabilities of the {len(labels)} classes."
    content = md.ContentT()
    content.contentPropertiesType = md.ContentProperties.FeatureProperties
    content.contentProperties = md.FeaturePropertiesT()
    out.content = content
    stats = md.StatsT()
    stats.max = [1.0]
    stats.min = [0.0]
    out.stats = stats
    out.associatedFiles = [label_file]

    subgraph = md.SubGraphMetadataT()
    subgraph.inputTensorMetadata = input_metadata
    subgraph.outputTensorMetadata = [out]
    subgraph.inputProcessUnits = [tokenizer_unit]

    model_md = md.ModelMetadataT()
    model_md.name = name
    model_md.description = description
    model_md.version = version
    model_md.author = author
    model_md.license = license_
    model_md.subgraphMetadata = [subgraph]
    model_md.minParserVersion = MIN_PARSER_VERSION
    b = flatbuffers.Builder(0)
    b.Finish(model_md.Pack(b), METADATA_FILE_IDENTIFIER)
    return bytes(b.Output())


def _embed(buf: bytes, vocab, layout, labels, output: str, info: dict, md=None) -> bytes:
    """The model bytes with `layout`'s input metadata, `output` as the only output, vocab and labels zipped on.

    No checks: `write_metadata` validates first (tests use this to build the broken files users write by hand)."""
    import flatbuffers

    md = md or _metadata_schema()
    schema = _model_schema()
    model = schema.ModelT.InitFromObj(schema.Model.GetRootAs(buf, 0))
    for buffer in model.buffers:
        # ai-edge-quantizer stores constants after the flatbuffer (`offset`, `size` from the file's start, 1 for
        # none); re-serializing moves that end, so they go inside the flatbuffer, where the converter keeps its own.
        if buffer.offset > 1:
            buffer.data = np.frombuffer(buf, np.uint8, count=buffer.size, offset=buffer.offset)
            buffer.offset = buffer.size = 0
    _, outputs = _io_tensors(buf)
    keep = next(o["index"] for o in outputs if o.get("signature_name", o["name"]) == output)
    model.subgraphs[0].outputs = np.array([keep], np.int32)
    for sig in model.signatureDefs or []:
        sig.outputs = [o for o in sig.outputs if o.tensorIndex == keep]
    meta = _metadata_buffer(md, len(vocab), layout, labels, output, **info)
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(meta, np.uint8)
    model.metadata = [m for m in (model.metadata or []) if _decode(m.name) != METADATA_NAME]
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata.append(entry)
    b = flatbuffers.Builder(len(buf) + len(meta) + 1024)
    b.Finish(model.Pack(b), TFLITE_FILE_IDENTIFIER)
    stream = io.BytesIO()
    stream.write(b.Output())
    with zipfile.ZipFile(stream, "a", zipfile.ZIP_STORED) as zf:
        zf.writestr(VOCAB_FILE, "\n".join(vocab) + "\n")
        zf.writestr(LABELS_FILE, "\n".join(labels) + "\n")
    return stream.getvalue()


def write_metadata(tflite_path, model_or_preprocessor, labels, out_path=None, *, output: str = "probabilities",
                   max_score_diff: float | None = 0.05, name: str = "tfbertopt BERT text classifier",
                   description: str = "Classifies a text into one of the labels (BERT, WordPiece tokenizer).",
                   version: str = "1", author: str = "tfbertopt", license: str = "") -> MetadataResult:
    """Embeds TFLite metadata for MediaPipe's TextClassifier into `tflite_path` (or writes `out_path`).

    Args:
      tflite_path: a .tflite from `export_litert` (any quantization) with a fixed sequence length. A file that
        already has metadata is rewritten (its old metadata and associated files are replaced).
      model_or_preprocessor: the keras-hub classifier (then its probabilities are compared with the file's), or
        its preprocessor or tokenizer: the vocabulary and lower-casing come from the tokenizer.
      labels: class names in output order (label index i = class i).
      out_path: where to write; default: overwrite `tflite_path`.
      output: the signature output MediaPipe should read; it becomes the subgraph's only output.
      max_score_diff: tolerance of the Keras comparison on a probe sentence (None: skip it).

    Returns a `MetadataResult`. Raises `MetadataError` (see `check_for_mediapipe`) before writing anything.
    """
    result = check_for_mediapipe(tflite_path, model_or_preprocessor, labels, max_score_diff, output)
    md = _metadata_schema()  # fail on a missing mediapipe before reading anything big
    vocab = _vocabulary(_tokenizer_of(model_or_preprocessor), warn=False)
    data = _embed(_read(tflite_path), vocab, result.input_layout, result.labels, output,
                  dict(name=name, description=description, version=version, author=author, license_=license), md)
    out_path = str(out_path or tflite_path)
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, "wb") as f:
        f.write(data)
    # The written file must still run and give the same probabilities (it is re-serialized).
    token_ids, mask, _ = _probe_ids(vocab, _tokenizer_of(model_or_preprocessor), result.sequence_length)
    after = run_probabilities(out_path, token_ids, mask)[0]
    if not np.allclose(after, result.probe_probabilities, atol=1e-6):
        raise MetadataError(f"the rewritten file gives {after} instead of {result.probe_probabilities}")
    logger.info("wrote MediaPipe metadata to %s (%d labels, vocabulary %d, length %d)", out_path, len(labels),
                len(vocab), result.sequence_length)
    return dataclasses.replace(result, path=out_path)


def read_metadata(path) -> dict:
    """The metadata tfbertopt wrote, read back: input names in order, output name, labels and vocabulary.

    Needs the metadata schema classes (mediapipe or tflite-support)."""
    md = _metadata_schema()
    schema = _model_schema()
    buf = _read(path)
    model = schema.Model.GetRootAs(buf, 0)
    meta = None
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if _decode(entry.Name()) == METADATA_NAME:
            meta = model.Buffers(entry.Buffer()).DataAsNumpy().tobytes()
    if meta is None:
        raise MetadataError(f"{path} has no {METADATA_NAME}")
    model_md = md.ModelMetadataT.InitFromObj(md.ModelMetadata.GetRootAs(meta, 0))
    sub = model_md.subgraphMetadata[0]
    with zipfile.ZipFile(io.BytesIO(buf)) as zf:
        files = {n: zf.read(n).decode() for n in zf.namelist()}
    tok = sub.inputProcessUnits[0].options
    return {
        "name": _decode(model_md.name),
        "min_parser_version": _decode(model_md.minParserVersion),
        "inputs": tuple(_decode(t.name) for t in sub.inputTensorMetadata),
        "outputs": tuple(_decode(t.name) for t in sub.outputTensorMetadata),
        "tokenizer": type(tok).__name__,
        "vocabulary": files[_decode(tok.vocabFile[0].name)].splitlines(),
        "labels": files[_decode(sub.outputTensorMetadata[0].associatedFiles[0].name)].splitlines(),
    }
