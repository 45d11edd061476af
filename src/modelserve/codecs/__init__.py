"""Wire formats to and from numpy arrays; codecs know signatures, never models."""

from __future__ import annotations

from .schema import Validator
from .seed import SeedCodec
from .seed import parse_json

__all__ = ["SeedCodec", "Validator", "parse_json"]
