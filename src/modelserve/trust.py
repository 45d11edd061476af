"""What the repository may load: pickles only when pinned or trusted, files only inside it.

A pickle (or joblib) file runs code while it is read: whoever can write one into the
repository, or swap one on its way there, runs code in the server. In production such a file
must be pinned by sha256 in its manifest (the pin is checked before a byte of it is read by
pickle) or trusted explicitly; development and testing load it with a warning. And no path
a manifest names, no symlink in a model or version folder, may lead outside the repository.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from pathlib import PurePath
from pathlib import PurePosixPath
from pathlib import PureWindowsPath

from .errors import ModelLoadError
from .settings import ServerSettings

logger = logging.getLogger(__name__)

#: Extensions that are read with pickle whatever the runtime.
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".joblib"})

#: Runtimes that read their artifact with joblib (pickle), except ``.skops`` files.
UNPICKLING_RUNTIMES = frozenset({"auto", "sklearn"})


def unpickles(path: Path, runtime_name: str) -> bool:
    """Whether loading ``path`` with ``runtime_name`` reads it with pickle (runs its code)."""
    suffix = path.suffix.lower()
    if suffix == ".skops":
        return False  # read through skops' allow-list of types
    return suffix in PICKLE_SUFFIXES or runtime_name in UNPICKLING_RUNTIMES


def check_pickles(
    settings: ServerSettings, trusted: bool, unpinned: Sequence[str], pin_target: Path
) -> None:
    """Refuse unpinned pickles in production unless they are trusted; warn elsewhere.

    :param trusted: the manifest says ``trust: true``.
    :param unpinned: the pin keys of the files that would be unpickled without a pin.
    :param pin_target: the path ``modelserve validate`` pins them through.
    :raises ModelLoadError: naming both ways out.
    """
    if not unpinned or trusted or settings.trust_pickles:
        return
    files = ", ".join(unpinned)
    if settings.profile != "production":
        logger.warning(
            "loading %s although its sha256 is not pinned: pickle runs the file's code; the "
            "production profile refuses it (pin it: modelserve validate %s --write-manifest)",
            files,
            pin_target,
        )
        return
    raise ModelLoadError(
        f"Refusing to load {files}: pickle and joblib files run code when they are loaded, "
        "and its sha256 is not pinned in model.yaml. Either pin it, after checking it is the "
        f"file you trained: `modelserve validate {pin_target} --write-manifest`; or trust it "
        "explicitly: `modelserve serve --trust-pickles`, MODELSERVE_TRUST_PICKLES=true, or "
        "`trust: true` in its model.yaml."
    )


def check_relative(value: str, field: str, folder: Path) -> None:
    """Refuse a manifest path that is absolute or climbs out with ``..``.

    :raises ModelLoadError: naming the field and the manifest.
    """
    posix, windows = PurePosixPath(value), PureWindowsPath(value)
    parts: Sequence[str] = (*posix.parts, *windows.parts)
    if posix.is_absolute() or windows.is_absolute() or windows.drive or ".." in parts:
        raise ModelLoadError(
            f"{field}: {value!r} in the manifest of {folder} leaves that folder: name a file "
            "inside it, relative and without '..'"
        )


def check_inside(path: Path, root: Path) -> None:
    """Refuse ``path`` when it (or a symlink on its way) leads outside ``root``.

    :param root: the repository root, already resolved.
    :raises ModelLoadError: naming where it leads.
    """
    real = path.resolve()
    if not _is_within(real, root):
        raise ModelLoadError(
            f"{path} leads to {real}, outside the model repository {root}: refusing to load "
            "it (symlinks must stay inside the repository; copy the file in instead)"
        )


def _is_within(path: PurePath, root: PurePath) -> bool:
    return path == root or root in path.parents
