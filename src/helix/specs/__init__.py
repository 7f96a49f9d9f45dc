"""Specs: the model, the hardware and the precision of each tensor class, plus token-count parsing."""

from helix.specs.hardware import HardwareSpec, load_hardware
from helix.specs.model import ModelSpec
from helix.specs.model_loader import load_model
from helix.specs.precision import BYTES_PER_ELEMENT, PrecisionSpec
from helix.specs.tokens import parse_tokens

__all__ = ["BYTES_PER_ELEMENT", "HardwareSpec", "ModelSpec", "PrecisionSpec", "load_hardware", "load_model",
           "parse_tokens"]
