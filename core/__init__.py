"""Low-level pieces below every stage: atomic writes, the trial and ablation record schemas, process safety.

Nothing here imports a stage (pretrain, transfer, benchmarks, results) or a training library.
"""
