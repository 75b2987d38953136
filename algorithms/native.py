"""The first layer of a Conv-4 on a CPU as one small C kernel (pooled_patch_kernel.c beside this file), compiled
on first use with the machine's C compiler, and the autograd Functions that use it.

Why C: a 3x3 convolution of a 1-3 channel image followed by batch norm and 2x2 max-pooling has almost no arithmetic
(9-27 multiply-adds per output) but the largest activations of the network (28x28x64 per Omniglot image). In
PyTorch every step of it — the patch product, the pooling with its int64 indices, the pooling gradient's zero-filled
full-resolution buffer and scatter, the weight-gradient product over that buffer — is a separate pass over those
activations, and on a CPU these passes cost about a quarter of a second-order MAML task. The kernel computes each 2x2
window's four positions in registers and keeps only the pooled maximum and which position won (one byte), and its
backward sends each gradient straight to the winning patch.

Second derivatives (MAML's inner step is differentiated through) come from the structure of the map: with the
winners fixed, the pooled output is linear in the folded weights, so its weight gradient is a linear map of the
incoming gradient that does not depend on the weights, and the derivative of that map is its adjoint, "the forward
with the winners held fixed". The three Functions below call each other's kernels in their backward passes, so
any order of derivative is available.

Compiled with `-O3 -march=native` into `$METABENCH_CACHE/native` (default `~/.cache/metabench/cache/native`), named
by a hash of the source, the flags, the compiler and the CPU, so machines sharing a home directory do not share a
binary; float32 and float64 builds. No compiler, a failed build, `METABENCH_NATIVE=0`, or a case the kernel does
not cover (other dtypes, autocast, torch.func transforms, channel counts not a multiple of 16): the caller's plain
PyTorch path is used, with a one-time warning when the build failed. Results agree with that path up to rounding
(tests/test_native.py).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import subprocess
import tempfile
import threading
import warnings
from pathlib import Path

import torch
from torch.autograd import Function

SOURCE = Path(__file__).with_name("pooled_patch_kernel.c")
FLAGS = ["-O3", "-march=native", "-shared", "-fPIC"]
# one build per element type: the kernel's REAL and the integer type of its comparison masks
ELEMENT_TYPES = {torch.float32: ["-DREAL=float", "-DIREAL=int32_t"],
                 torch.float64: ["-DREAL=double", "-DIREAL=int64_t"]}
LANES = 16          # channels per vector step in the kernel (its LANES)
MAX_INPUT_CHANNELS = 3

_lock = threading.Lock()
_libraries: dict[torch.dtype, ctypes.CDLL | None] = {}   # what library() found, per element type


def cache_dir() -> Path:
    """Where compiled kernels go: under $METABENCH_CACHE (as the dataset caches), else ~/.cache/metabench/cache."""
    base = os.environ.get("METABENCH_CACHE") or "~/.cache/metabench/cache"
    return Path(base).expanduser() / "native"


def _compiler() -> str:
    return os.environ.get("CC") or "cc"


def _cpu_signature() -> str:
    """The CPU's model and feature flags (what -march=native compiles for), or the machine name elsewhere."""
    try:
        with open("/proc/cpuinfo") as f:
            lines = [line for line in f if line.startswith(("model name", "flags", "Features", "CPU part"))]
        return "".join(sorted(set(lines)))
    except OSError:
        return platform.machine() + platform.processor()


def _build(target: Path, flags: list[str]) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    # compile to a temporary name and rename: processes starting together (ray workers, parallel tests) never
    # load a half-written library
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        result = subprocess.run([_compiler(), *flags, "-o", tmp, str(SOURCE)], capture_output=True, text=True,
                                timeout=120)
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else
                               f"exit status {result.returncode}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def build_info() -> dict:
    """What a run's manifest records about the kernel (results differ with and without it, by float rounding):
    whether it is switched on, whether it could be built here, and what it was built with and for."""
    enabled = os.environ.get("METABENCH_NATIVE", "1") != "0"
    info = {"enabled": enabled, "available": bool(enabled and library(torch.float32) is not None),
            "compiler": _build_details.get("compiler"), "flags": _build_details.get("flags"),
            "cpu_features": _cpu_features(), "library": _build_details.get("library"),
            "error": _build_details.get("error")}
    return info


def _cpu_features() -> list[str]:
    """The CPU's vector-instruction flags that decide what -march=native (and so the kernel) compiles to."""
    signature = _cpu_signature()
    flags = next((line.split(":", 1)[1].split() for line in signature.splitlines()
                  if line.startswith(("flags", "Features"))), [])
    return sorted(f for f in set(flags) if f.startswith(("avx", "fma", "amx", "sse4", "neon", "asimd", "sve")))


_build_details: dict = {}
calls = 0   # forward calls of the kernel in this process; a cell compares it before and after (bench/cell.py)


def library(dtype: torch.dtype = torch.float32) -> ctypes.CDLL | None:
    """The kernel compiled for `dtype` (float32 or float64), built on first use; None where it cannot be had (see
    the module docstring)."""
    if dtype in _libraries:
        return _libraries[dtype]
    with _lock:
        if dtype in _libraries:
            return _libraries[dtype]
        found = None
        if os.environ.get("METABENCH_NATIVE", "1") != "0" and dtype in ELEMENT_TYPES:
            flags = FLAGS + ELEMENT_TYPES[dtype]
            try:
                version = subprocess.run([_compiler(), "--version"], capture_output=True, text=True,
                                         timeout=30).stdout
                key = hashlib.sha256("\0".join([SOURCE.read_text(), *flags, version, _cpu_signature()]).encode())
                target = cache_dir() / f"pooled_patch_kernel-{key.hexdigest()[:16]}.so"
                if not target.exists():
                    _build(target, flags)
                found = _declare(ctypes.CDLL(str(target)))
                _build_details.update(compiler=version.splitlines()[0] if version else _compiler(),
                                      flags=" ".join(FLAGS), library=target.name)
            except Exception as error:  # no compiler, build error, unwritable cache: the PyTorch path still works
                _build_details.update(error=f"{type(error).__name__}: {error}".splitlines()[0])
                warnings.warn(f"metabench: the first-layer C kernel ({SOURCE.name}) is not available ({error}); "
                              f"using the slower PyTorch path. Install a C compiler (or set CC) to get it, or set "
                              f"METABENCH_NATIVE=0 to silence this.", RuntimeWarning, stacklevel=2)
        _libraries[dtype] = found
        return found


def _declare(lib: ctypes.CDLL) -> ctypes.CDLL:
    pointer, i64, i32 = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
    # ctypes releases the GIL during these calls, so MAML's worker threads run them side by side
    lib.pooled_patch_forward.argtypes = [pointer, i64, i32, i32, i32, pointer, i32, pointer, pointer]
    lib.pooled_patch_weight_grad.argtypes = [pointer, i64, i32, i32, i32, pointer, pointer, i32, pointer]
    lib.pooled_patch_gather.argtypes = [pointer, i64, i32, i32, i32, pointer, pointer, i32, pointer]
    lib.patch_moments.argtypes = [pointer, i64, i32, i32, i32, pointer, pointer]
    for fn in (lib.pooled_patch_forward, lib.pooled_patch_weight_grad, lib.pooled_patch_gather, lib.patch_moments):
        fn.restype = i32
    return lib


def covers(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether the kernel handles a first layer with this input and convolution weight [c, cin, 3, 3] (the caller's
    PyTorch path handles the rest)."""
    return (x.device.type == "cpu" and x.dtype in ELEMENT_TYPES and weight.dtype == x.dtype and x.dim() == 4
            and x.shape[1] <= MAX_INPUT_CHANNELS and weight.shape[0] % LANES == 0
            and not (x.requires_grad and torch.is_grad_enabled())  # the kernel gives no gradient to the images
            and not torch.is_autocast_enabled("cpu")
            and torch._C._functorch.peek_interpreter_stack() is None   # tensors under torch.func have no data_ptr
            and library(x.dtype) is not None)


def pooled_patch_relu(x: torch.Tensor, folded: torch.Tensor) -> torch.Tensor:
    """relu(max_pool2d(conv3x3(x) with batch norm folded in, 2)) for a first layer: `folded` is [9 * cin + 1, c],
    the weights in F.unfold's patch order with the bias as last row. Returns [n, c, h // 2, w // 2] in channels-last
    memory. Differentiable (to any order) in `folded`; x is data and gets no gradient."""
    global calls
    calls += 1
    return _Forward.apply(folded, x.detach().contiguous())


def patch_moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [k] and (biased) covariance [k, k] of the 3x3 patches (padding 1, stride 1) at every position of x,
    k = 9 * cin, in F.unfold's order: what F.unfold(x, 3, padding=1) would give without writing its 9x copy of the
    images. Accumulated in float64, returned in x's dtype."""
    x = x.detach().contiguous()
    n, cin, h, w = x.shape
    k = 9 * cin
    sums, products = torch.empty(k, dtype=torch.float64), torch.empty(k, k, dtype=torch.float64)
    _check(library(x.dtype).patch_moments(x.data_ptr(), n, cin, h, w, sums.data_ptr(), products.data_ptr()))
    count = n * h * w
    products = products.triu() + products.triu(1).t()
    mean = sums / count
    return mean.to(x.dtype), (products / count - torch.outer(mean, mean)).to(x.dtype)


def _check(status: int) -> None:
    if status != 0:
        raise MemoryError("metabench: the first-layer C kernel could not allocate its scratch buffers")


class _Forward(Function):
    @staticmethod
    def forward(ctx, folded, x):
        n, cin, h, w = x.shape
        folded = folded.to(x.dtype).contiguous()
        c = folded.shape[1]
        pooled = x.new_empty(n, h // 2, w // 2, c)
        winners = torch.empty(n, h // 2, w // 2, c, dtype=torch.uint8)
        _check(library(x.dtype).pooled_patch_forward(x.data_ptr(), n, cin, h, w, folded.data_ptr(), c,
                                                     pooled.data_ptr(), winners.data_ptr()))
        ctx.save_for_backward(x, winners)
        return pooled.permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        x, winners = ctx.saved_tensors
        return _WeightGradient.apply(grad, x, winners), None


class _WeightGradient(Function):
    """grad -> the folded weights' gradient, the winners fixed (linear in grad)."""

    @staticmethod
    def forward(ctx, grad, x, winners):
        n, cin, h, w = x.shape
        grad = grad.to(x.dtype).permute(0, 2, 3, 1).contiguous()  # [n, h, w, c]: no copy for channels-last ones
        c = grad.shape[-1]
        out = torch.empty(9 * cin + 1, c, dtype=torch.float64)
        _check(library(x.dtype).pooled_patch_weight_grad(x.data_ptr(), n, cin, h, w, winners.data_ptr(),
                                                         grad.data_ptr(), c, out.data_ptr()))
        ctx.save_for_backward(x, winners)
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, grad_of_weights):
        x, winners = ctx.saved_tensors
        return _FixedWinners.apply(grad_of_weights, x, winners), None, None


class _FixedWinners(Function):
    """folded weights -> the pooled output with the winners fixed: the adjoint of _WeightGradient."""

    @staticmethod
    def forward(ctx, folded, x, winners):
        n, cin, h, w = x.shape
        folded = folded.to(x.dtype).contiguous()
        c = folded.shape[1]
        out = x.new_empty(n, h // 2, w // 2, c)
        _check(library(x.dtype).pooled_patch_gather(x.data_ptr(), n, cin, h, w, winners.data_ptr(),
                                                    folded.data_ptr(), c, out.data_ptr()))
        ctx.save_for_backward(x, winners)
        return out.permute(0, 3, 1, 2)

    @staticmethod
    def backward(ctx, grad):
        x, winners = ctx.saved_tensors
        return _WeightGradient.apply(grad, x, winners), None, None
