"""The fitted model: its state (:mod:`~fewshot.model.state`) and its folder
(:mod:`~fewshot.model.folder`)."""

from fewshot.model.folder import FORMAT_VERSION, MODEL_FILES, load_model, read_manifest, save_model
from fewshot.model.state import Calibration, FittedModel, LabelShift

__all__ = ["FORMAT_VERSION", "MODEL_FILES", "Calibration", "FittedModel", "LabelShift",
           "load_model", "read_manifest", "save_model"]
