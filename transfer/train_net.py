#!/usr/bin/env python
"""Fine-tune a backbone with Detectron2 and record the trial (the trainer is ``transfer/trainer.py``).

    python transfer/train_net.py --config-file transfer/configs/voc/voc_R_50_C4_24k_rgb.yaml \
        [--num-gpus 8 --num-machines 1 --dist-url auto] [--resume] [--seed 1] [--trial 0] \
        [--label "MoCo IN-1M"] [--input-format RGB|BGR] MODEL.WEIGHTS ckpt.pkl OUTPUT_DIR output/voc/moco/trial0
"""

import sys
import warnings
from pathlib import Path

if __package__ in (None, ""):  # run as `python transfer/train_net.py`
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from core.process import die_with_parent  # noqa: E402  (first: light, and before the heavy imports)

die_with_parent()  # started by a runner: never train as an orphan, from here on (core/process.py)
# fvcore scripts its focal loss at import and torch deprecates torch.jit.script: two lines of someone
# else's noise on every trial's stderr, above the suite's own one-line errors.
warnings.filterwarnings("ignore", message=r"`torch\.jit\.script` is deprecated", category=FutureWarning)

from transfer.trainer import cli  # noqa: E402

if __name__ == "__main__":
    sys.exit(cli())
