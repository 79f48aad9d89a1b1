"""Which number format a transformer trains in.

`--precision auto` (the default of `finetune` and `pretrain`) picks bf16 autocast where the
hardware does bfloat16 matrix work natively and fp32 everywhere else. On a CPU with AVX-512
BF16 or AMX, oneDNN runs bf16 matrix products several times faster than fp32; on an AVX2-only
CPU it emulates them and bf16 would be *slower*, so auto stays with fp32 there. Weights and
optimizer state stay fp32 either way: autocast only changes the format of the matrix work.
"""

from __future__ import annotations

PRECISIONS = ("auto", "fp32", "bf16")


def training_precision_option(group: str):
    """The --precision field of the training commands that run transformers (finetune,
    pretrain): one declaration, so their flag, help and config key cannot drift apart."""
    from nlpft.options import option

    return option("auto", "auto: bf16 autocast where the hardware does bf16 natively (AVX-512 BF16/AMX CPUs, recent "
                          "GPUs), else fp32; weights stay fp32 (default: %(default)s)", choices=list(PRECISIONS),
                  group=group, fingerprinted=True)


def bf16_is_native() -> bool:
    """True when bf16 matrix work runs in hardware on the device training will use."""
    import torch

    if torch.cuda.is_available():
        return torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())  # AVX-512 BF16 / AMX present
    except (AttributeError, RuntimeError):
        return False


def resolve_precision(requested: str, *, transformer: bool = True) -> str:
    """"fp32" or "bf16" for `requested` ("auto", "fp32" or "bf16").

    auto -> bf16 only for transformer models on bf16 hardware: the small word-level models
    (static vectors, the RNN LM head) are memory-bound and gain nothing from it.
    """
    if requested not in PRECISIONS:
        from nlpft.errors import UserInputError

        raise UserInputError(f"precision {requested!r}: must be one of {', '.join(PRECISIONS)}")
    if requested != "auto":
        return requested
    return "bf16" if transformer and bf16_is_native() else "fp32"
