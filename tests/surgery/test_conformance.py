"""The conformance matrix: every method on a tiny random classifier of every family.

Each cell either holds its property (the same ones the BERT tests check) or raises the named error that
`EXPECTED_ERRORS` / `EXPORT_ERRORS` give, with its reason. `docs/conformance.md` shows this table:
`python tests/surgery/test_conformance.py --write` rewrites it, and `test_docs_page_is_current` fails when stale.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from tfbertopt.export.litert import ExportError
from tfbertopt.export.metadata import MetadataError
from tfbertopt.factorization import factorize, factorize_embeddings, share_layers, unshare_layers
from tfbertopt.kernels import UnsupportedModelError, find_kernels
from tfbertopt.models import tiny_classifier
from tfbertopt.pruning import ConstantSparsity, prune_low_magnitude, strip_pruning
from tfbertopt.pruning.prune import get_pruning
from tfbertopt.pruning.structured import full_plan, plan_drop_layers, shrink, with_layerdrop
from tfbertopt.quantization import activation_ranges, quantize_model
from tfbertopt.surgery import as_compressed
from tfbertopt.train import predict_logits
from tfbertopt.vocabulary import trim_vocabulary, wordpiece_tokenizer
from tfbertopt.vocabulary.wordpiece import required_tokens

# Family -> tiny_classifier options (ELECTRA twice: E = H is BERT-shaped, E < H projects after the LayerNorm).
FAMILIES = {
    "bert": {}, "electra": {"embedding_dim": 8}, "electra_e_eq_h": {"embedding_dim": 16}, "albert": {},
    "roberta": {}, "xlm_roberta": {}, "distilbert": {}, "deberta_v3": {},
}
METHODS = ["compressed copy", "magnitude pruning", "shrink heads+FFN", "drop a layer", "layerdrop",
           "svd at full rank", "embedding factorization", "share layers", "unshare layers", "qat int8",
           "qat int8-matmul", "qat dynamic-int4-tables", "trim vocabulary"]
_E_WIDE = "already 8 wide"
EXPECTED_ERRORS = {
    ("electra", "embedding factorization"): (UnsupportedModelError, _E_WIDE),
    ("albert", "embedding factorization"): (UnsupportedModelError, _E_WIDE),
    ("albert", "share layers"): (ValueError, "already shares layers"),
    ("albert", "drop a layer"): (UnsupportedModelError, "unshare first"),
    **{(family, "trim vocabulary"): (UnsupportedModelError, "needs a WordPiece tokenizer")
       for family in ("albert", "roberta", "xlm_roberta", "deberta_v3")},
}
REASONS = {
    _E_WIDE: "the embeddings are already E wide and normalised before their projection (ALBERT/ELECTRA layout): "
             "there is no V x H table to factorize",
    "already shares layers": "ALBERT already shares every layer; `unshare_layers` first to share differently",
    "needs a WordPiece tokenizer": "vocabulary trimming edits a WordPiece vocabulary; these families split words "
                                   "with a SentencePiece model or byte-level BPE merges, which define the pieces and "
                                   "their ids, so dropping table rows would not drop them from how text splits",
    "unshare first": "ALBERT calls one encoder at every depth; a plan drops encoder layers, so `unshare_layers` "
                     "first to drop depths (or drop heads and FFN neurons inside the shared layer)",
}


def _classifier(family):
    base = "electra" if family.startswith("electra") else family
    clf = tiny_classifier(base, num_layers=2, hidden_dim=16, num_heads=2, intermediate_dim=32, **FAMILIES[family])
    # A random tiny model's logits lie within ~0.01 of each other; spread them so that labels can disagree.
    clf.output_dense.kernel.assign(np.asarray(clf.output_dense.kernel) * 200.0)
    return clf


@pytest.fixture(scope="module")
def classifiers():
    return {}


def _get(classifiers, family):
    if family not in classifiers:
        classifiers[family] = _classifier(family)
    return classifiers[family]


def _inputs(model, n=4, length=9):
    rng = np.random.default_rng(0)
    vocabulary = find_kernels(model, roles=["token_embedding"])[0].shape[0]
    lengths = rng.integers(3, length + 1, size=n)
    mask = (np.arange(length)[None, :] < lengths[:, None]).astype("int32")
    x = {"token_ids": rng.integers(4, vocabulary, size=(n, length)).astype("int32") * mask, "padding_mask": mask}
    if "segment_ids" in model.backbone.input:
        x["segment_ids"] = (np.arange(length)[None, :] >= 5).astype("int32") * mask
    return x


def _same(a, b, x, atol=1e-5):
    np.testing.assert_allclose(predict_logits(a, x), predict_logits(b, x), atol=atol)


def check(method, clf, x):
    """Runs `method` on `clf` and asserts its property; returns nothing, raises the method's own errors."""
    if method == "compressed copy":
        copy = as_compressed(clf)
        assert type(copy) is type(clf)
        _same(copy, clf, x)
    elif method == "magnitude pruning":
        model = prune_low_magnitude(clf, ConstantSparsity(0.5, 0))
        try:
            get_pruning(model).update(0)
            for ref in get_pruning(model).refs:
                assert np.count_nonzero(np.asarray(ref.variable) == 0) == ref.size // 2, ref.path
        finally:
            strip_pruning(model)
    elif method == "shrink heads+FFN":
        from helpers.surgery import zero_dropped    # here: the module also runs as a script (--write)

        plan = full_plan(clf)
        plan.heads = {i: [1] for i in plan.heads}
        plan.neurons = {i: list(range(3, 32, 2)) for i in plan.neurons}
        small = shrink(clf, plan)
        assert type(small) is type(clf)
        reference = as_compressed(clf)
        reference = shrink(reference, full_plan(reference))      # a copy whose kernels may be zeroed
        zero_dropped(reference, plan)
        _same(small, reference, x)
    elif method == "drop a layer":
        small = shrink(clf, plan_drop_layers(clf, [2]))
        assert len(small.backbone.layer_specs) == 1
    elif method == "layerdrop":
        model = with_layerdrop(clf, 0.3)
        assert model.backbone.layerdrop == 0.3
        _same(model, clf, x)                                     # inference runs every layer
    elif method == "svd at full rank":
        _same(factorize(clf, rank=16), clf, x, atol=1e-4)
    elif method == "embedding factorization":
        _same(factorize_embeddings(clf, dim=16), clf, x, atol=1e-4)
    elif method == "share layers":
        shared = share_layers(clf, "pairs", init="first")
        assert len(shared.backbone.transformer_layers) == 1
    elif method == "unshare layers":
        shared = clf if as_compressed(clf).backbone.encoder_call_order != [0, 1] else share_layers(clf, "all")
        alone = unshare_layers(shared)
        assert len(alone.backbone.transformer_layers) == 2
        _same(alone, shared, x)
    elif method.startswith("qat"):
        from tfbertopt.quantization import QuantizationConfig

        config = QuantizationConfig.for_export(method.split()[1])
        qat = quantize_model(clf, config, calibration=x, calibration_steps=4)
        ranges = activation_ranges(qat)
        assert bool(ranges) == bool(config.points) and all(lo <= 0.0 <= hi for lo, hi in ranges.values())
        if config.table_bits:                   # every row of the token table is looked up on its own grid
            table = np.asarray(qat.backbone.token_embedding.embeddings)
            rows = np.asarray(qat.backbone.token_embedding(x["token_ids"]))
            scale = np.abs(table[x["token_ids"]]).max(-1, keepdims=True) / (2 ** (config.table_bits - 1) - 1)
            np.testing.assert_allclose(rows / scale, np.round(rows / scale), atol=1e-3)
        labels = predict_logits(qat, x).argmax(-1)
        assert labels.shape == (4,)
    elif method == "trim vocabulary":
        tokenizer = wordpiece_tokenizer(clf)        # the named error for other families
        special = [tokenizer.token_to_id(t) for t in required_tokens(tokenizer)]
        keep = np.union1d(np.unique(x["token_ids"]), special)
        small = trim_vocabulary(clf, keep)
        assert small.backbone.token_embedding.embeddings.shape[0] == len(keep)
        remapped = dict(x, token_ids=np.searchsorted(keep, x["token_ids"]).astype("int32"))
        np.testing.assert_allclose(predict_logits(small, remapped), predict_logits(clf, x), atol=1e-5)
    else:
        raise AssertionError(method)


def _grouped(families):
    """One xdist group per family: its cells run on one worker, which builds the family's classifier once."""
    return [pytest.param(f, marks=pytest.mark.xdist_group(f"conformance-{f}")) for f in families]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("family", _grouped(FAMILIES))
def test_cell(family, method, classifiers):
    clf = _get(classifiers, family)
    x = _inputs(clf)
    expected = EXPECTED_ERRORS.get((family, method))
    if expected is None:
        check(method, clf, x)
    else:
        error, match = expected
        with pytest.raises(error, match=match):
            check(method, clf, x)


EXPORTS = ["float32", "float16", "dynamic", "int8", "int8-matmul", "16x8", "MediaPipe metadata"]
EXPORT_ERRORS = {
    ("deberta_v3", "16x8"): (ExportError, "16x8"),
    ("albert", "MediaPipe metadata"): (MetadataError, "not a WordPiece tokenizer"),
    **{(f, "MediaPipe metadata"): (MetadataError, "exactly 3 int32 inputs")
       for f in ("roberta", "xlm_roberta", "distilbert", "deberta_v3")},
}
REASONS.update({
    "16x8": "LiteRT's int16-activation quantizer asks for a calibrated range of an integer tensor (DeBERTa-v3's "
            "relative-position bucket arithmetic), and calibration ranges float tensors only; int8 and dynamic work",
    "not a WordPiece tokenizer": "MediaPipe's BERT text classifier reads WordPiece vocabularies here; ALBERT "
                                 "tokenizes with SentencePiece",
    "exactly 3 int32 inputs": "MediaPipe's BERT text classifier feeds token ids, mask and segment ids; RoBERTa, "
                              "XLM-RoBERTa, DistilBERT and DeBERTa-v3 take no segment ids",
})
_FLOAT32_FILES = {}    # id(classifier) -> its float32 file, which the metadata cell writes its metadata into


def export_check(mode, clf, x, folder):
    """Exports `clf` in `mode` and checks that the file agrees with Keras (float: logits; quantized: labels)."""
    from tfbertopt.export.litert import export_litert
    from tfbertopt.export.metadata import write_metadata
    from tfbertopt.export.verify import run_litert

    expected = predict_logits(clf, x)
    if mode == "MediaPipe metadata":
        source = _FLOAT32_FILES.get(id(clf))
        path = folder / "meta.tflite"
        if source is not None and source.exists():
            shutil.copy(source, path)
        else:
            export_litert(clf, path, "float32", x["token_ids"].shape[1])
        result = write_metadata(str(path), clf, ["negative", "positive"])
        assert list(result.labels) == ["negative", "positive"]
        return
    path = export_litert(clf, folder / f"{mode}.tflite", mode, x["token_ids"].shape[1], calibration=x).path
    if mode == "float32":
        _FLOAT32_FILES[id(clf)] = Path(path)
    logits = run_litert(path, x)
    if mode == "float32":
        np.testing.assert_allclose(logits, expected, atol=1e-4)
    elif mode == "float16":
        np.testing.assert_allclose(logits, expected, atol=2e-2 * np.ptp(expected))
    else:
        assert np.mean(logits.argmax(-1) == expected.argmax(-1)) >= 0.9


@pytest.mark.parametrize("mode", EXPORTS)
@pytest.mark.parametrize("family", _grouped(FAMILIES))
def test_export_cell(family, mode, classifiers, tmp_path):
    clf = _get(classifiers, family)
    x = _inputs(clf, n=32, length=12)
    expected = EXPORT_ERRORS.get((family, mode))
    if expected is None:
        export_check(mode, clf, x, tmp_path)
    else:
        with pytest.raises(expected[0], match=expected[1]):
            export_check(mode, clf, x, tmp_path)


@pytest.mark.parametrize("family", _grouped(FAMILIES))
def test_chain_shrink_factorize_qat_int8_matmul(family, classifiers, tmp_path):
    """The issue's chain on every family: shrink -> SVD -> QAT for int8-matmul -> save/load -> int8-matmul export,
    the file agreeing with the loaded Keras model."""
    from tfbertopt.export.litert import export_litert
    from tfbertopt.export.verify import run_litert
    from tfbertopt.quantization import QuantizationConfig
    from tfbertopt.saving import load_model

    clf = _get(classifiers, family)
    x = _inputs(clf, n=32, length=12)
    plan = full_plan(clf)
    plan.heads = {i: [0] for i in plan.heads}
    small = factorize(shrink(clf, plan), rank=6)
    qat = quantize_model(small, QuantizationConfig.for_export("int8-matmul"), calibration=x, calibration_steps=32)
    assert type(qat) is type(clf)
    qat.save(tmp_path / "qat.keras")
    loaded = load_model(tmp_path / "qat.keras")
    np.testing.assert_allclose(predict_logits(loaded, x), predict_logits(qat, x), atol=1e-5)
    path = export_litert(loaded, tmp_path / "chain.tflite", "int8-matmul", 12, calibration=x).path
    agreement = np.mean(run_litert(path, x).argmax(-1) == predict_logits(loaded, x).argmax(-1))
    assert agreement >= 0.9


def matrix_markdown() -> str:
    """The matrix as a markdown table (the docs page's body)."""
    lines = ["| method | " + " | ".join(FAMILIES) + " |", "| --- |" + " --- |" * len(FAMILIES)]
    rows = [(m, m, EXPECTED_ERRORS) for m in METHODS] + [(f"export {m}", m, EXPORT_ERRORS) for m in EXPORTS]
    for label, key, errors in rows:
        cells = ["yes" if (family, key) not in errors else
                 f"{errors[family, key][0].__name__}: {errors[family, key][1]}" for family in FAMILIES]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    lines += ["", "Why each error:", ""] + [f"- *{key}*: {why}." for key, why in REASONS.items()]
    return "\n".join(lines)


DOCS_PAGE = Path(__file__).resolve().parents[2] / "docs" / "conformance.md"
START, END = "<!-- conformance matrix: generated by tests/surgery/test_conformance.py -->", "<!-- end of matrix -->"


def _page_with(text: str) -> str:
    head, _, rest = text.partition(START)
    _, _, tail = rest.partition(END)
    return f"{head}{START}\n{matrix_markdown()}\n{END}{tail}"


def test_docs_page_is_current():
    text = DOCS_PAGE.read_text()
    assert START in text and END in text, f"{DOCS_PAGE} lost its generated-block markers"
    assert _page_with(text) == text, "docs/conformance.md is stale: run python tests/surgery/test_conformance.py --write"


if __name__ == "__main__":
    if "--write" in sys.argv:
        DOCS_PAGE.write_text(_page_with(DOCS_PAGE.read_text()))
    else:
        print(matrix_markdown())
