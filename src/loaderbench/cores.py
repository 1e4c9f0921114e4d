"""How a job's ranks and their loaders share the cores, in numbers and in words.

With ``trainer.ranks=N`` every rank builds its own DataLoader, so the node runs N × (workers + 1)
processes. torch's own warning compares one loader's workers with all the cores, once per rank;
here the whole job is counted once, before it starts (:func:`oversubscribed`), and the report
explains a verdict with it (:func:`explain`) and names the setting per rank (:func:`per_rank`).
Loader threads (the ``threads`` backend) share their rank's process: they are said, not counted.
Pure arithmetic over numbers: the report, which imports no torch, uses it too.
"""

from __future__ import annotations

THREAD_BACKENDS = ("threads",)  # loader.backend values whose workers are threads of the rank


def rank_threads(torch_threads: int | None, ranks: int, cores: int) -> int:
    """Each rank's torch intra-op threads: ``trainer.torch_threads`` when set, else the usable
    cores ÷ ranks (at least 1). torch would give every rank all the cores' worth of threads
    (``torchrun`` sets 1; ``elastic_launch`` sets nothing), N ranks each spinning a thread per
    core."""
    if torch_threads:
        return int(torch_threads)
    return max(1, cores // ranks)


def processes(ranks: int, workers: int, backend: str | None = None) -> int:
    """The job's processes: each rank and its loader's worker processes (threads: none)."""
    worker_processes = 0 if backend in THREAD_BACKENDS else workers
    return ranks * (worker_processes + 1)


def _workers(n: int) -> str:
    return f"{n} worker{'s' if n != 1 else ''}"


def oversubscribed(ranks: int, workers: int, cores: int, backend: str | None = None) -> str | None:
    """One warning line when the job's processes outnumber the usable cores, else None."""
    total = processes(ranks, workers, backend)
    if total <= cores:
        return None
    if backend in THREAD_BACKENDS:
        return (
            f"{ranks} ranks on {cores} usable cores: more ranks than cores (each rank's "
            f"{workers} loader threads share its process and are not counted here)"
        )
    return (
        f"{ranks} ranks × ({_workers(workers)} + 1) = {total} processes on {cores} usable "
        f"cores: the workers take the ranks' cores (per rank: num_workers={workers}; "
        f"{max(cores // ranks - 1, 0)} workers per rank would leave each rank a core)"
    )


def explain(ranks: int, workers: int, cores: int, backend: str | None = None) -> str:
    """The verdict's reason in a few words, or "" when the cores suffice:
    ``2 ranks × 2 workers on 2 cores: the workers take the ranks' cores``."""
    if processes(ranks, workers, backend) <= cores or backend in THREAD_BACKENDS:
        return ""
    return (
        f"{ranks} ranks × {_workers(workers)} on {cores} cores: the workers take the ranks' cores"
    )


def per_rank(snippet: str, ranks: int, workers: int, cores: int | None) -> str:
    """The setting as each rank uses it: ``per rank: `DataLoader(..., num_workers=2)`; 4 ranks
    use 12 of 16 cores``, or "" with one rank."""
    if ranks <= 1:
        return ""
    used = processes(ranks, workers)
    of = f" of {cores}" if cores else ""
    return f"per rank: `{snippet}`; {ranks} ranks use {used}{of} cores"
