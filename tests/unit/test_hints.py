"""One-line hints for the errors researchers hit every week (SPEC section 4).

Where torch produces the error cheaply on a CPU, the real exception is used, so a change in
torch's wording shows up here; the GPU-only messages are torch's wording copied verbatim.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch

from pytest_mlexp.hints import hint_for, hint_for_exception


def raised(fn: Callable[[], Any]) -> BaseException:
    try:
        fn()
    except BaseException as exc:
        return exc
    raise AssertionError("did not raise")


def hint_of(fn: Callable[[], Any]) -> str | None:
    exc = raised(fn)
    return hint_for(type(exc).__name__, str(exc))


def _backward_twice() -> None:
    x = torch.ones(2, requires_grad=True)
    y = (x * x).sum()
    y.backward()
    y.backward()


def _no_grad_backward() -> None:
    (torch.ones(2) * 2).sum().backward()


# --- real errors, produced with torch and numpy on the CPU --------------------------------------


def test_numpy_on_a_tensor_that_requires_grad() -> None:
    hint = hint_of(lambda: torch.ones(2, requires_grad=True).numpy())
    assert hint is not None and ".detach().cpu().numpy()" in hint


@pytest.mark.parametrize(
    "make",
    [
        lambda: torch.ones(3) + torch.ones(4),
        lambda: torch.ones(6).view(4, 2),
        lambda: torch.nn.functional.cross_entropy(torch.ones(4, 3), torch.ones(5, dtype=torch.long)),
        lambda: torch.nn.Conv2d(3, 8, 3)(torch.ones(1, 1, 8, 8)),
        lambda: torch.stack([torch.ones(2), torch.ones(3)]),
        lambda: torch.cat([torch.ones(2, 2), torch.ones(3, 3)]),
        lambda: np.ones(3) + np.ones(4),
        lambda: np.ones((3, 4)) @ np.ones((5, 6)),
    ],
    ids=["add", "view", "batch_size", "channels", "stack", "cat", "np-broadcast", "np-matmul"],
)
def test_shape_mismatches_say_print_the_shapes(make: Callable[[], Any]) -> None:
    hint = hint_of(make)
    assert hint is not None and "print the shapes" in hint and ".shape" in hint


def test_linear_layer_shape_mismatch() -> None:
    hint = hint_of(lambda: torch.nn.Linear(10, 5)(torch.ones(4, 20)))
    assert hint is not None and "in_features" in hint and "print(x.shape)" in hint


def test_state_dict_size_mismatch() -> None:
    hint = hint_of(lambda: torch.nn.Linear(10, 5).load_state_dict(torch.nn.Linear(10, 6).state_dict()))
    assert hint is not None and "checkpoint does not match the model" in hint


def test_dtype_mismatch() -> None:
    hint = hint_of(lambda: torch.nn.Linear(10, 5)(torch.ones(4, 10, dtype=torch.float64)))
    assert hint is not None and ".float()" in hint
    hint = hint_of(lambda: torch.nn.functional.cross_entropy(torch.ones(4, 3), torch.ones(4)))
    assert hint is not None and ".long()" in hint


def test_key_error_on_a_models_output_dict() -> None:
    out = {"logits": torch.ones(2)}
    hint = hint_of(lambda: out["loss"])
    assert hint is not None and "'loss' is not in that dict" in hint and "print(out.keys())" in hint
    assert "params:" in hint  # runner.params is a dict too


def test_module_not_found() -> None:
    hint = hint_of(lambda: importlib.import_module("no_such_pkg_for_mlexp"))
    assert hint is not None and "pip install no_such_pkg_for_mlexp" in hint and "modal: pip:" in hint
    assert hint_for("ModuleNotFoundError", "No module named 'sklearn'") == (
        "pip install scikit-learn here, and add 'scikit-learn' to modal: pip: in the plan for Modal runs"
    )
    dotted = hint_for("ModuleNotFoundError", "No module named 'torch.nonexistent'")
    assert dotted is not None and "torch is installed but has no module torch.nonexistent" in dotted


def test_backward_twice_and_no_grad() -> None:
    hint = hint_of(_backward_twice)
    assert hint is not None and "retain_graph=True" in hint
    hint = hint_of(_no_grad_backward)
    assert hint is not None and "torch.no_grad()" in hint


def test_embedding_index_out_of_range() -> None:
    hint = hint_of(lambda: torch.nn.Embedding(3, 2)(torch.tensor([5])))
    assert hint is not None and "num_embeddings" in hint


# --- GPU-only errors: torch's wording ---------------------------------------------------------

OOM = (
    "CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 15.78 GiB total capacity; 14.56 GiB already "
    "allocated; 3.44 MiB free; 14.62 GiB reserved in total by PyTorch) If reserved memory is >> allocated "
    "memory try setting max_split_size_mb to avoid fragmentation."
)


@pytest.mark.parametrize(
    ("type_name", "message"),
    [
        ("OutOfMemoryError", OOM),
        ("torch.cuda.OutOfMemoryError", OOM),
        ("RuntimeError", OOM),
        ("RuntimeError", "MPS backend out of memory (MPS allocated: 17.00 GB, other allocations: 1.2 GB)"),
        ("OutOfMemoryError", "something else entirely"),
    ],
)
def test_cuda_out_of_memory(type_name: str, message: str) -> None:
    hint = hint_for(type_name, message)
    assert hint is not None and "smaller batch" in hint and "bf16" in hint and "checkpointing" in hint


def test_oom_hint_names_empty_cache() -> None:
    hint = hint_for("OutOfMemoryError", OOM)
    assert hint is not None and "torch.cuda.empty_cache()" in hint


@pytest.mark.parametrize(
    "message",
    [
        "Expected all tensors to be on the same device, but found at least two devices, cuda:0 and cpu!",
        "Expected all tensors to be on the same device, but got mat1 is on cuda:0, different from other "
        "tensors on cpu (when checking argument in method wrapper_CUDA_addmm)",
        "Input type (torch.cuda.FloatTensor) and weight type (torch.FloatTensor) should be the same",
        "Input type (torch.FloatTensor) and weight type (torch.cuda.FloatTensor) should be the same or input "
        "should be a MKLDNN tensor and weight is a dense tensor",
    ],
)
def test_tensors_on_different_devices(message: str) -> None:
    hint = hint_for("RuntimeError", message)
    assert hint is not None and "runner.device" in hint and "model.to(runner.device)" in hint


def test_cpu_only_machine() -> None:
    hint = hint_of(lambda: torch.ones(2).cuda()) if not torch.cuda.is_available() else None
    if hint is None:
        hint = hint_for("AssertionError", "Torch not compiled with CUDA enabled")
    assert hint is not None and "runner.device" in hint


def test_cuda_tensor_to_numpy() -> None:
    message = (
        "can't convert cuda:0 device type tensor to numpy. Use Tensor.cpu() to copy the tensor to host "
        "memory first."
    )
    hint = hint_for("TypeError", message)
    assert hint is not None and ".cpu()" in hint


def test_device_side_assert() -> None:
    message = (
        "CUDA error: device-side assert triggered\nCUDA kernel errors might be asynchronously reported at "
        "some other API call, so the stacktrace below might be incorrect."
    )
    hint = hint_for("RuntimeError", message)
    assert hint is not None and "CUDA_LAUNCH_BLOCKING=1" in hint and "num_classes" in hint


def test_dataloader_worker_killed() -> None:
    hint = hint_for("RuntimeError", "DataLoader worker (pid 12345) is killed by signal: Bus error.")
    assert hint is not None and "num_workers=0" in hint


# --- misc ------------------------------------------------------------------------------------


def test_no_hint_for_ordinary_errors() -> None:
    assert hint_for("ValueError", "learning rate must be positive") is None
    assert hint_for("RuntimeError", "") is None


def test_hints_are_one_line() -> None:
    for type_name, message in [
        ("OutOfMemoryError", OOM),
        ("KeyError", "'loss'"),
        ("RuntimeError", "mat1 and mat2 shapes cannot be multiplied (4x20 and 10x5)"),
        ("ModuleNotFoundError", "No module named 'timm'"),
        ("ImportError", "cannot import name 'foo' from 'bar' (/x/bar.py)"),
    ]:
        hint = hint_for(type_name, message)
        assert hint is not None and "\n" not in hint


def test_hint_through_a_handler_import_error() -> None:
    message = (
        "importing handler module experiments/p2.py (as experiments.p2) failed: ModuleNotFoundError: "
        "No module named 'timm'"
    )
    hint = hint_for("HandlerImportError", message)
    assert hint is not None and "pip install timm" in hint


def test_hint_for_exception_follows_the_cause() -> None:
    def wrapped() -> None:
        try:
            torch.ones(2, requires_grad=True).numpy()
        except RuntimeError as exc:
            raise ValueError("the handler failed") from exc

    hint = hint_for_exception(raised(wrapped))
    assert hint is not None and ".detach()" in hint
    assert hint_for_exception(ValueError("plain")) is None
