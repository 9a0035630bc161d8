"""The mixed precision a job runs in, and whether an error means the device ran out of memory. The decisions are
plain functions of the device's capabilities (tested without a GPU); torch is imported only where a device is asked.

    python -m weibolabel.run.precision    # bf16, fp16 or no for the visible GPUs (the launch scripts' default)
"""

from __future__ import annotations

import sys

from weibolabel.util.errors import UserError

PRECISIONS = ("no", "fp16", "bf16")  # accelerate's names; "no" is fp32
# bf16 tensor cores arrived with Ampere (compute capability 8.0). torch.cuda.is_bf16_supported() also says True on
# V100 (7.0) and T4/RTX 6000 (7.5), where bf16 is emulated: slow, and some kernels refuse it.
NATIVE_BF16_CAPABILITY = (8, 0)


def has_native_bf16(compute_capability: tuple[int, int] | None) -> bool:
    return compute_capability is not None and tuple(compute_capability) >= NATIVE_BF16_CAPABILITY


def choose_precision(
    requested: str | None, *, device_type: str, compute_capability: tuple[int, int] | None = None
) -> tuple[str, str | None]:
    """(precision, warning or None). Without an explicit `requested`: bf16 on GPUs that compute it natively, fp16 on
    older GPUs, fp32 ("no") on CPUs. A choice is kept (warned where slow), except fp16 on a CPU, which has no fp16
    autocast (accelerate would run fp32 and call it fp16): that becomes "no", said so, so outputs record the truth."""
    if requested is not None and requested not in PRECISIONS:
        raise UserError(f"Unknown precision '{requested}'; use one of {list(PRECISIONS)}.")
    on_gpu = device_type == "cuda"
    if requested is None:
        return ("bf16" if has_native_bf16(compute_capability) else "fp16") if on_gpu else "no", None
    if requested == "fp16" and not on_gpu:
        return "no", "fp16 needs a GPU: running in fp32 on this CPU (bf16 is the CPU's mixed precision)"
    if requested == "bf16" and on_gpu and not has_native_bf16(compute_capability):
        major, minor = compute_capability or ("?", "?")
        return "bf16", (
            f"bf16 on a GPU of compute capability {major}.{minor}, which has no native bf16 (that needs 8.0, "
            "Ampere or newer): it is emulated, slow, and some kernels refuse it. Use --mixed_precision fp16."
        )
    return requested, None


def precision_dtype(precision: str):
    """The torch dtype weights are cast to for scoring in `precision`; None keeps them as stored (fp32)."""
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)


def device_capability(device=None) -> tuple[int, int] | None:
    """The compute capability of `device`, or with None the lowest of the visible GPUs (a node with mixed GPUs runs
    at what its weakest computes natively); None without GPUs."""
    import torch

    if device is not None:
        return tuple(torch.cuda.get_device_capability(device)) if torch.device(device).type == "cuda" else None
    if not torch.cuda.is_available():
        return None
    return min(tuple(torch.cuda.get_device_capability(i)) for i in range(torch.cuda.device_count()))


# cuBLAS, cuDNN and the CUDA runtime report an exhausted device as a plain RuntimeError, not
# torch.cuda.OutOfMemoryError: "CUBLAS_STATUS_ALLOC_FAILED", "cuDNN error: CUDNN_STATUS_NOT_ENOUGH_WORKSPACE",
# "CUDA error: out of memory".
OUT_OF_MEMORY_MARKERS = ("out of memory", "_alloc_failed", "not_enough_workspace")


def is_out_of_memory(error: BaseException) -> bool:
    """Whether `error` (or an error it was raised from) means the GPU ran out of memory."""
    import torch

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, torch.cuda.OutOfMemoryError):
            return True
        if isinstance(error, RuntimeError) and any(m in str(error).lower() for m in OUT_OF_MEMORY_MARKERS):
            return True
        error = error.__cause__ or error.__context__
    return False


def main(argv: list[str] | None = None) -> int:
    """Print the precision for this machine's GPUs (or the explicit choice given as the one argument)."""
    argv = sys.argv[1:] if argv is None else argv
    capability = device_capability()
    try:
        precision, warning = choose_precision(
            argv[0] if argv else None, device_type="cuda" if capability else "cpu", compute_capability=capability
        )
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    print(precision)
    return 0


if __name__ == "__main__":
    sys.exit(main())
