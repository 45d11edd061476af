from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from modelserve.errors import InvalidInput
from modelserve.errors import ModelLoadError
from modelserve.manifest import Manifest
from modelserve.runtimes.base import ArtifactSet
from modelserve.runtimes.registry import get_runtime_class
from modelserve.runtimes.registry import runtime_for_file
from modelserve.runtimes.torch import TorchRuntime

from ..images import TinyNet
from ..images import save_torchscript

STATE_DICT = {"module": "tests.images:TinyNet"}


@pytest.fixture(autouse=True)
def _restore_threads() -> Iterator[None]:
    """torch's thread count is process-wide: put it back after each test."""
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def load(path: Path, **manifest: Any) -> TorchRuntime:
    runtime = TorchRuntime(ArtifactSet(artifact=path, manifest=Manifest(**manifest)))
    runtime.load()
    return runtime


@pytest.fixture
def scripted(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.pt"
    save_torchscript(TinyNet(), path)
    return path


@pytest.fixture
def state_dict(tmp_path: Path) -> Path:
    path = tmp_path / "tiny.pth"
    torch.save(TinyNet().state_dict(), path)
    return path


@pytest.mark.parametrize("suffix", [".pt", ".pth", ".torchscript"])
def test_registry_maps_torch_files(suffix: str) -> None:
    assert runtime_for_file(Path("m" + suffix)) == "torch"
    assert get_runtime_class("torch") is TorchRuntime


def test_torchscript_serves_an_image_signature(scripted: Path) -> None:
    runtime = load(scripted, image={"size": [16, 12]}, class_names=["a", "b", "c"])
    sig = runtime.signature()
    assert sig.kind == "image" and sig.class_names == ("a", "b", "c")
    assert sig.tensor_inputs[0].to_dict() == {
        "name": "input",
        "datatype": "FP32",
        "shape": [-1, 3, 16, 12],
    }
    assert sig.tensor_outputs[0].shape == (-1, 3)
    x = np.random.default_rng(0).normal(size=(4, 3, 16, 12)).astype(np.float32)
    expected = TinyNet()(torch.from_numpy(x)).detach().numpy()
    assert np.allclose(runtime.predict({"input": x})["output"], expected, atol=1e-6)
    assert runtime.describe()["format"] == "torchscript"


def test_state_dict_loads_into_the_named_class(state_dict: Path) -> None:
    runtime = load(state_dict, image={"size": 8}, torch=STATE_DICT)
    x = np.ones((1, 3, 8, 8), dtype=np.float32)
    assert runtime.predict({"input": x})["output"].tolist() == [[3.0, 12.0, 21.0]]
    assert runtime.describe()["format"] == "state_dict"


def test_state_dict_module_kwargs_build_a_grayscale_model(tmp_path: Path) -> None:
    path = tmp_path / "gray.pth"
    torch.save(TinyNet(channels=1).state_dict(), path)
    runtime = load(
        path,
        image={"size": 8, "mode": "L"},
        torch={"module": "tests.images:TinyNet", "module_kwargs": {"channels": 1}},
    )
    assert runtime.signature().tensor_inputs[0].shape == (-1, 1, 8, 8)


def test_state_dicts_load_weights_only(tmp_path: Path) -> None:
    # A pickle that would run code when loaded: weights_only refuses it.
    path = tmp_path / "evil.pth"
    torch.save({"linear.weight": torch.zeros(3, 3), "hook": Path("/")}, path)
    with pytest.raises(ModelLoadError, match="Cannot load evil.pth into tests.images:TinyNet"):
        load(path, image={"size": 8}, torch=STATE_DICT)


def test_bad_module_paths_fail_to_load(state_dict: Path) -> None:
    with pytest.raises(ModelLoadError, match="package.module:Class"):
        load(state_dict, image={"size": 8}, torch={"module": "TinyNet"})
    with pytest.raises(ModelLoadError, match="Cannot import"):
        load(state_dict, image={"size": 8}, torch={"module": "tests.images:Nope"})


def test_torchscript_needs_an_image_size(scripted: Path) -> None:
    with pytest.raises(ModelLoadError, match="set image.size"):
        load(scripted)


def test_a_state_dict_without_module_says_how_to_load_it(state_dict: Path) -> None:
    with pytest.raises(ModelLoadError, match="torch.module"):
        load(state_dict, image={"size": 8})


def test_a_model_that_fails_on_the_declared_input_fails_to_load(state_dict: Path) -> None:
    with pytest.raises(ModelLoadError, match=r"fails on a \[1, 1, 8, 8\] input"):
        load(state_dict, image={"size": 8, "mode": "L"}, torch=STATE_DICT)


def test_class_names_must_match_the_outputs(scripted: Path) -> None:
    with pytest.raises(ModelLoadError, match="4 class_names but the model outputs 3"):
        load(scripted, image={"size": 8}, class_names=["a", "b", "c", "d"])


def test_wrong_input_shape_is_invalid_input(scripted: Path) -> None:
    runtime = load(scripted, image={"size": 8})
    with pytest.raises(InvalidInput, match=r"\[-1, 3, 8, 8\]"):
        runtime.predict({"input": np.zeros((2, 8, 8, 3), dtype=np.float32)})


def test_threads_are_set_at_load(scripted: Path) -> None:
    load(scripted, image={"size": 8}, torch={"threads": 2})
    assert torch.get_num_threads() == 2
    load(scripted, image={"size": 8})
    assert torch.get_num_threads() == 1


def test_device_cuda_needs_a_gpu(scripted: Path) -> None:
    if torch.cuda.is_available():
        runtime = load(scripted, image={"size": 8}, torch={"device": "cuda"})
        assert runtime.describe()["device"].startswith("cuda")
    else:
        with pytest.raises(ModelLoadError, match="no CUDA device"):
            load(scripted, image={"size": 8}, torch={"device": "cuda"})
    auto = load(scripted, image={"size": 8}, torch={"device": "auto"})
    assert auto.describe()["device"].startswith("cuda" if torch.cuda.is_available() else "cpu")
