"""pretrain stage of the suite: MoCo v1/v2 pretraining and its evaluations (see docs/pretrain.md).

Entry points: ``main_moco`` (pretraining), ``main_lincls`` (linear protocol), ``supervised`` (supervised
counterpart), ``bench`` (step speed), ``slurm`` (submitit). Pieces: ``moco`` (model, queue, shuffling BN,
loss), ``augment``, ``data``, ``distributed``, ``checkpoint``, ``knn``, ``logs``, ``speed``, ``schedule``,
``classification``, ``resnets``, ``synthetic`` (tiny image folders for smoke tests).
"""
