"""Where jobs run: the one launcher of the suite, below both stages (pretraining and the benchmarks).

* :mod:`cluster.slurm`: the SLURM flags, the job resources and submission through submitit;
* :mod:`cluster.jobs`: what SLURM says about a job, the job id every part of the suite records, waiting;
* :mod:`cluster.signals`: the signals that stop a training process with a checkpoint, and the rule for the
  processes it forks.

It imports nothing of ``pretrain``, ``transfer``, ``benchmarks`` or ``results``.
"""
