"""One-line hints for the errors ML researchers hit every week (SPEC section 4).

Pure string matching on the exception's type name and message, so it works for exceptions
that come back from a worker process or a remote container as text, and never imports torch.
The patterns are torch's (and numpy's) own wording; the first rule that matches wins, so the
specific rules come before the general ones.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["hint_for", "hint_for_exception"]

# Import names whose pip distribution is named differently.
_PIP_NAMES = {
    "sklearn": "scikit-learn",
    "skimage": "scikit-image",
    "cv2": "opencv-python",
    "PIL": "pillow",
    "yaml": "pyyaml",
    "bs4": "beautifulsoup4",
    "google.protobuf": "protobuf",
    "Crypto": "pycryptodome",
    "dotenv": "python-dotenv",
    "attr": "attrs",
}

_SHAPES = (
    "print the shapes of the tensors on the failing line (e.g. print(x.shape, w.shape)) and fix the one "
    "that is off"
)


_IMPORT_FAILED = re.compile(r"failed: ([\w.]+): (.*)", re.DOTALL)


@dataclass(frozen=True)
class _Rule:
    types: frozenset[str]  # exception type names this rule is limited to; empty: any type
    pattern: re.Pattern[str]
    hint: Callable[[re.Match[str]], str]


def _rule(pattern: str, hint: str | Callable[[re.Match[str]], str], *types: str) -> _Rule:
    if callable(hint):
        fn = hint
    else:
        text = hint

        def fn(_m: re.Match[str]) -> str:
            return text

    return _Rule(frozenset(types), re.compile(pattern, re.IGNORECASE | re.DOTALL), fn)


def _module_hint(m: re.Match[str]) -> str:
    name = m.group(1)
    top = name.split(".")[0]
    if "." in name:
        # Python names the first missing piece, so the top-level package exists
        return (
            f"{top} is installed but has no module {name}: check the spelling, or the installed version "
            f"(pip show {top})"
        )
    pip = _PIP_NAMES.get(top, top)
    return f"pip install {pip} here, and add {pip!r} to modal: pip: in the plan for Modal runs"


def _key_hint(m: re.Match[str]) -> str:
    key = m.group(0).strip() or "that key"
    return (
        f"{key} is not in that dict: list what is there (print(out.keys()) for a model's output or a "
        f"batch); for runner.params, add it under params: in the plan"
    )


_RULES: tuple[_Rule, ...] = (
    _rule(
        r"scaffolded stub",
        "pytest --mlexp-scaffold wrote this handler as a stub: replace its raise with the real work and "
        "return the metrics the plan's criteria judge",
        "NotImplementedError",
    ),
    _rule(
        r"CUDA out of memory|MPS backend out of memory|HIP out of memory|CUBLAS_STATUS_ALLOC_FAILED"
        r"|RESOURCE_EXHAUSTED|out of memory on device",
        "the GPU ran out of memory: use a smaller batch size, bf16 (torch.autocast(device_type='cuda', "
        "dtype=torch.bfloat16)), gradient checkpointing, or torch.cuda.empty_cache() between stages; "
        "or ask for a bigger GPU in resources: gpu:",
    ),
    _rule(
        r".",
        "the GPU ran out of memory: use a smaller batch size, bf16 autocast or gradient checkpointing",
        "OutOfMemoryError",
    ),
    _rule(
        r"DefaultCPUAllocator: can't allocate memory|Unable to allocate [\d.]+ \w+ for an array",
        "host memory ran out: load data in smaller chunks or a smaller batch, or raise resources: memory:",
    ),
    _rule(r".", "host memory ran out: load data in smaller chunks or a smaller batch", "MemoryError"),
    _rule(
        r"device-side assert triggered",
        "usually an index out of range, such as a label >= num_classes in cross_entropy; rerun on CPU or "
        "with CUDA_LAUNCH_BLOCKING=1 to see the real error",
    ),
    _rule(
        r"Can't call numpy\(\) on Tensor that requires grad",
        "convert with t.detach().cpu().numpy() (or t.item() for a single number)",
    ),
    _rule(
        r"can't convert \w+(:\d+)? device type tensor to numpy",
        "copy the tensor to the CPU first: t.detach().cpu().numpy()",
    ),
    _rule(
        r"Expected all tensors to be on the same device|expected device \S+ but got device"
        r"|is on CPU, but expected (it )?to be on GPU|found at least two devices"
        r"|Input type \(torch\.cuda\.\w+\) and weight type \(torch\.\w+\)"
        r"|Input type \(torch\.\w+\) and weight type \(torch\.cuda\.\w+\)"
        r"|Input type \(\S+\) and weight type \(\S+\) should be the same or input should be a MKLDNN",
        "model and data are on different devices: move both to runner.device (model.to(runner.device); "
        "x = x.to(runner.device))",
    ),
    _rule(
        r"Torch not compiled with CUDA enabled|No CUDA GPUs are available|Found no NVIDIA driver"
        r"|CUDA driver initialization failed|no kernel image is available for execution on the device",
        "no usable GPU here: use runner.device instead of hard-coding 'cuda', or request one with "
        "resources: gpu: and a remote executor",
    ),
    _rule(
        r"must have the same dtype|expected scalar type \w+ but found \w+|expected target dtype"
        r"|Input type \(\S+\) and (weight|bias) type \(\S+\) should be the same"
        r"|result type \w+ can't be cast to the desired output type",
        "dtype mismatch: numpy arrays are float64, so use torch.from_numpy(x).float(); class targets for "
        "cross_entropy must be .long()",
    ),
    _rule(
        r"mat1 and mat2 shapes cannot be multiplied",
        "a Linear layer's in_features does not match the input's last dimension: print(x.shape) before "
        "the failing line and fix the layer size (or flatten the input)",
    ),
    _rule(
        r"Error\(s\) in loading state_dict",
        "the checkpoint does not match the model: build the model with the params the checkpoint was "
        "trained with, and compare {k: v.shape for k, v in model.state_dict().items()} with the checkpoint",
    ),
    _rule(
        r"size mismatch|shape '\[[^\]]*\]' is invalid for input of size"
        r"|The size of tensor a \(\d+\) must match"
        r"|Expected input batch_size \(\d+\) to match target batch_size|to have \d+ channels, but got"
        r"|stack expects each tensor to be equal size|Sizes of tensors must match"
        r"|could not be broadcast together|mismatch in its core dimension"
        r"|shapes \([^)]*\) and \([^)]*\) not aligned"
        r"|Expected \d+D .*input|Given normalized_shape=",
        _SHAPES,
    ),
    _rule(
        r"Trying to backward through the graph a second time",
        "a tensor from an earlier step is still part of the graph: detach what you carry across steps "
        "(h = h.detach()), or pass retain_graph=True if you really need two backward passes",
    ),
    _rule(
        r"does not require grad and does not have a grad_fn",
        "the loss has no graph: it was computed under torch.no_grad()/inference_mode, from .detach()ed or "
        ".item() values, or the parameters have requires_grad=False",
    ),
    _rule(
        r"index out of range in self",
        "an index is >= num_embeddings: check the vocabulary size or the label range against the layer size",
        "IndexError",
    ),
    _rule(
        r"DataLoader worker \(pid\(?s?\)? ?[\d, ]+\)? (is killed|exited unexpectedly)"
        r"|unable to open shared memory|bus error",
        "a DataLoader worker died: rerun with num_workers=0 to see the real error (in a container, /dev/shm "
        "may be too small)",
    ),
    _rule(r"No module named '([^']+)'", _module_hint, "ModuleNotFoundError", "ImportError"),
    _rule(
        r"cannot import name '([^']+)' from '([^']+)'",
        lambda m: (
            f"{m.group(2)} has no {m.group(1)}: check the installed version (pip show "
            f"{m.group(2).split('.')[0]}), or look for a circular import if {m.group(2)} is your own module"
        ),
        "ImportError",
    ),
    _rule(r".*", _key_hint, "KeyError"),
)


def hint_for(exc_type_name: str, message: str) -> str | None:
    """A one-line hint (without a ``hint:`` prefix) for an exception, or None.

    ``exc_type_name`` may be qualified (``torch.OutOfMemoryError``); only its last part is used.
    """
    type_name = exc_type_name.rpartition(".")[2]
    if type_name == "HandlerImportError":
        # the handler module's own error is quoted in the message: hint on that one
        inner = _IMPORT_FAILED.search(message)
        if inner is not None:
            return hint_for(inner.group(1), inner.group(2))
    for rule in _RULES:
        if rule.types and type_name not in rule.types:
            continue
        m = rule.pattern.search(message)
        if m is not None:
            return rule.hint(m)
    return None


def hint_for_exception(exc: BaseException) -> str | None:
    """:func:`hint_for` on an exception, or else on its causes (an import error wraps the real one)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        hint = hint_for(type(current).__name__, str(current))
        if hint is not None:
            return hint
        current = current.__cause__ or current.__context__
    return None
