"""Speed options and what ``auto`` means for each (on where it is safe, i.e. on GPUs).

==================  ==========================================================================
option              auto
==================  ==========================================================================
``--amp``           GPU: bf16 autocast where supported, else fp16 with a gradient scaler; CPU: off
TF32 matmul/conv    GPU: on
``--channels-last`` GPU: on; CPU: off
``--compile``       GPU: ``nn.Module.compile()`` on both encoders (state-dict keys unchanged); CPU: off
pinned memory       GPU: on
persistent workers  on whenever there are loader workers
fused SGD           GPU: on (``foreach`` on the CPU)
==================  ==========================================================================

The contrastive head (normalisation, logits against the queue, loss) always runs in float32, and
the queue is stored in float32, so autocast changes only the encoders' arithmetic.

``--precision paper`` restores the paper's arithmetic: fp32 encoders (no autocast) and TF32 off
(``--precision fast``, the default, is the table above). The resolved precision is stored in each
checkpoint (``suite.precision``), copied by ``transfer/convert.py`` into the ``.pkl`` provenance
(``pretrain_precision``) and from there into every fine-tuning trial record.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch

CHOICES = ("auto", "on", "off")
AMP_CHOICES = ("auto", "bf16", "fp16", "off")
PRECISIONS = ("fast", "paper")


@dataclass
class Speed:
    amp_dtype: torch.dtype | None
    use_scaler: bool
    channels_last: bool
    compile: bool
    pin_memory: bool
    tf32: bool = False
    precision: str = "fast"

    def describe(self) -> str:
        amp = {None: "fp32", torch.bfloat16: "bf16 autocast", torch.float16: "fp16 autocast + grad scaler"}[self.amp_dtype]
        return (f"{amp}, TF32 {'on' if self.tf32 else 'off'}, channels_last {'on' if self.channels_last else 'off'}, "
                f"compile {'on' if self.compile else 'off'}")

    def record(self) -> dict[str, object]:
        """What a checkpoint stores about the arithmetic it was trained with."""
        autocast = {None: None, torch.bfloat16: "bf16", torch.float16: "fp16"}[self.amp_dtype]
        return {"mode": self.precision, "autocast": autocast, "tf32": self.tf32,
                "paper_arithmetic": autocast is None and not self.tf32}

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format


def add_speed_args(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("speed (auto = on where safe: on GPUs)")
    g.add_argument("--amp", choices=AMP_CHOICES, default="auto", help="mixed precision of the encoders (default auto)")
    g.add_argument("--channels-last", choices=CHOICES, default="auto", help="NHWC memory format (default auto)")
    g.add_argument("--compile", choices=CHOICES, default="auto", help="torch.compile the encoders (default auto)")
    g.add_argument("--precision", choices=PRECISIONS, default="fast",
                   help="fast: --amp as given and TF32 on GPUs; paper: fp32 without TF32, as the paper (default fast)")


def check_precision(args: argparse.Namespace) -> str | None:
    """The one-line problem with ``--precision``/``--amp``, or None."""
    if getattr(args, "precision", "fast") == "paper" and getattr(args, "amp", "auto") not in ("auto", "off"):
        return f"--precision paper means fp32: drop --amp {args.amp} (or use --precision fast)"
    return None


def resolve_speed(args: argparse.Namespace, device: torch.device) -> Speed:
    """Turn the ``auto|on|off`` flags into concrete settings for ``device``."""
    cuda = device.type == "cuda"
    precision = getattr(args, "precision", "fast")
    amp = "off" if precision == "paper" else getattr(args, "amp", "auto")
    if amp == "auto":
        amp = ("bf16" if torch.cuda.is_bf16_supported() else "fp16") if cuda else "off"
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16, "off": None}[amp]

    def on(flag: str) -> bool:
        value = getattr(args, flag, "auto")
        return cuda if value == "auto" else value == "on"

    tf32 = cuda and precision != "paper"
    if cuda:
        torch.backends.cudnn.benchmark = not getattr(args, "deterministic", False)
        torch.backends.cuda.matmul.allow_tf32 = tf32
        torch.backends.cudnn.allow_tf32 = tf32
    return Speed(dtype, dtype is torch.float16 and cuda, on("channels_last"), on("compile"), cuda, tf32, precision)


def sgd(params, lr: float, momentum: float, weight_decay: float, device: torch.device) -> torch.optim.SGD:
    """SGD with the fused kernel on GPUs and the multi-tensor one elsewhere (same maths)."""
    fast = {"fused": True} if device.type == "cuda" else {"foreach": True}
    return torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=weight_decay, **fast)
