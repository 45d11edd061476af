"""Pure stack/split of tensor dicts along the batch axis: no threads, no clocks.

The batcher uses these to run several callers' rows as one model call and hand each caller
exactly its own rows and the outputs it asked for.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..types import TensorDict

#: What makes two requests stackable: per input, its name, dtype and non-batch dimensions.
Layout = tuple[tuple[str, str, tuple[int, ...]], ...]


def batch_size(inputs: TensorDict) -> int:
    """Rows in a request: the shared length of every input's first axis.

    :raises ValueError: when inputs disagree or one has no batch axis.
    """
    sizes = {v.shape[0] if v.ndim else -1 for v in inputs.values()}
    if len(sizes) != 1 or -1 in sizes:
        raise ValueError(f"inputs do not share one batch dimension: {sorted(sizes)}")
    return sizes.pop()


def layout(inputs: TensorDict) -> Layout:
    """A hashable description of the request's inputs, equal for stackable requests."""
    return tuple(sorted((name, v.dtype.str, tuple(v.shape[1:])) for name, v in inputs.items()))


def stack(requests: Sequence[TensorDict]) -> tuple[TensorDict, list[int]]:
    """Concatenate same-layout requests along axis 0; return the batch and each one's rows."""
    sizes = [batch_size(r) for r in requests]
    names = requests[0].keys()
    merged = {name: np.concatenate([r[name] for r in requests], axis=0) for name in names}
    return merged, sizes


def split(outputs: TensorDict, sizes: Sequence[int]) -> list[TensorDict]:
    """Cut each output back into the callers' row ranges (views, no copies).

    :raises ValueError: when an output's first axis is not the batch's total rows.
    """
    total = sum(sizes)
    for name, value in outputs.items():
        if value.ndim == 0 or value.shape[0] != total:
            raise ValueError(f"output {name!r} has shape {value.shape}, not {total} rows")
    bounds = np.cumsum([0, *sizes])
    return [
        {name: value[start:end] for name, value in outputs.items()}
        for start, end in zip(bounds[:-1], bounds[1:], strict=True)
    ]


def union_outputs(requested: Sequence[Sequence[str] | None]) -> list[str] | None:
    """Every output any caller asked for; ``None`` (all outputs) if any caller wants all."""
    wanted: dict[str, None] = {}
    for names in requested:
        if names is None:
            return None
        wanted.update(dict.fromkeys(names))
    return list(wanted)


def select(outputs: TensorDict, names: Sequence[str] | None) -> TensorDict:
    """Only the outputs a caller asked for (all when ``names`` is ``None``)."""
    if names is None:
        return outputs
    return {name: outputs[name] for name in names if name in outputs}
