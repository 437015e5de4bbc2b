"""Model surgery: read any supported keras-hub text encoder into one description, and rebuild it compressed.

`describe(model)` gives the `CompressedBackbone` config that computes the same function; `as_compressed(model)` the
exact copy on that backbone; `rebuild(model, **changes)` a new model with a changed config, weights carried across.
Every compression in tfbertopt builds its model through `rebuild`.
"""

from tfbertopt.surgery.description import EncoderDescription, describe, family_of
from tfbertopt.surgery.rebuild import as_compressed, check_classifier, copy_encoder, rebuild, task_like

__all__ = ["EncoderDescription", "describe", "family_of", "as_compressed", "check_classifier", "rebuild", "copy_encoder", "task_like"]
