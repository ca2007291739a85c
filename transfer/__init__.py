"""Transfer stage: checkpoint conversion to Detectron2, configs and the fine-tuning trainer."""

import warnings

# Noise printed by every Detectron2 import on current setuptools/torch; not actionable for users.
warnings.filterwarnings("ignore", message="pkg_resources is deprecated", category=UserWarning)
warnings.filterwarnings("ignore", message=".*torch.jit.script.*is deprecated", category=FutureWarning)
