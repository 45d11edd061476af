"""Model runtimes: one small interface, one module per model format."""

from __future__ import annotations

from .base import ArtifactSet
from .base import Runtime
from .registry import get_runtime_class
from .registry import is_fork_safe
from .registry import register_runtime

__all__ = ["ArtifactSet", "Runtime", "get_runtime_class", "is_fork_safe", "register_runtime"]
