"""How the tests are handed out to xdist workers (``-n 2 --dist loadgroup``, see ``conftest.py``).

xdist's own ``loadgroup`` marks a group by appending ``@name`` to each test's node id, which has no effect on
pytest >= 9 (node ids are no longer stored in ``_nodeid``): every test was handed out on its own and the
module-scoped fixtures of a file (a Slurm job chain, a reference sweep) were built again on the other worker.
This scheduler groups by file name instead and hands the most expensive groups out first, so the workers end
together.
"""

from __future__ import annotations

from xdist.scheduler import LoadScopeScheduling

# Files whose module-scoped fixtures are expensive: all their tests run on one worker, in this order (slowest
# first: a long group started last would leave the other worker idle at the end).
GROUPED_FILES = ("test_cluster_on_slurm", "test_backbone_rows", "test_hostile_weights", "test_sweep_resume",
                 "test_trust", "test_pretrain_cli", "test_pretrain_mechanisms", "test_ablation_sweep",
                 "test_results_browser", "test_tiny_data", "test_data_backends", "test_methods",
                 "test_pretrain_data", "test_results_render", "test_gpu_path", "test_pretrain_v3")


def file_stem(nodeid: str) -> str:
    return nodeid.split("::", 1)[0].rsplit("/", 1)[-1].removesuffix(".py")


def scope_of(nodeid: str) -> str:
    """A grouped file's tests share one scope (the file); every other test is a scope of its own."""
    stem = file_stem(nodeid)
    return stem if stem in GROUPED_FILES else nodeid


def order_key(nodeid: str) -> int:
    """Grouped files first, in GROUPED_FILES order; the rest keep their collection order (a stable sort)."""
    stem = file_stem(nodeid)
    return GROUPED_FILES.index(stem) if stem in GROUPED_FILES else len(GROUPED_FILES)


class FileGroupScheduling(LoadScopeScheduling):
    """``LoadScopeScheduling`` with :func:`scope_of` as the scope."""

    def _split_scope(self, nodeid: str) -> str:
        return scope_of(nodeid)
