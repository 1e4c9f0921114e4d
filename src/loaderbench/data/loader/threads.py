"""The ``threads`` backend: ``loader.num_workers`` threads in this process, on torchdata.nodes.

The same contract as the ``dataloader`` backend: the epoch's order is
:class:`~loaderbench.data.seeding.EpochSampler`'s, so the same samples reach the same batches
in the same order; each sample draws its augmentation from its own generator (the presets:
:mod:`loaderbench.random_transforms`); a batch is ``(images, labels, ids)``, collated as the
DataLoader backend collates it (:func:`~loaderbench.data.seeding.collate_batch`). The pipeline
is the library's own idiom, the one its guide gives for a DataLoader (and the bare loop of
``scripts/bare_loop.py``)::

    IterableWrapper(keys) → ParallelMapper(dataset.__getitem__, num_workers, method="thread",
    in_order=True) → Batcher(batch_size, drop_last) → Mapper(collate_batch)
    [→ PinMemory] → Prefetcher(prefetch_factor × num_workers) → Loader

What the library leaves to its user, done here:

- a sample's exception is caught in its thread and travels down the pipeline as an item, so
  this thread raises the very exception (type, message naming the sample, traceback), not a
  copy rebuilt from its text;
- ``loader.timeout``: a batch that does not arrive in time raises, by ``SIGALRM``, in the main
  thread (torchdata's queues wait without a deadline; the main thread wakes every 0.1 s in
  them, so the alarm is handled within that);
- ending: :meth:`ThreadLoader.close` stops every stage and joins its threads. A thread stuck in
  ``__getitem__`` cannot be stopped from outside; it is reported (:attr:`ThreadLoader.stuck`),
  and :mod:`loaderbench.experiment` ends an in-process sweep rather than let it run on into
  the next job.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Iterator
from typing import Any

from torch.utils.data import Dataset

from loaderbench.data.loader.plan import LoaderPlan
from loaderbench.data.seeding import EpochSampler, TransformedDataset, collate_batch

# torchdata.nodes' thread targets (Python names a thread "Thread-N (target)")
_TARGETS = ("(_apply_udf)", "(_populate_queue)", "(_sort_worker)")
STALLED = (
    "loader threads timed out"  # :func:`loaderbench.data.faults.explain_loader_error` reads it
)


class _Failed:
    """A sample's exception, passed down the pipeline as an item (see the module)."""

    def __init__(self, exc: BaseException):
        self.exc = exc


class _Fetch:
    """``dataset[key]`` in a loader thread; an exception becomes a :class:`_Failed` item."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __call__(self, key: tuple[int, int]) -> Any:
        try:
            return self.dataset[key]
        except Exception as exc:
            exc.add_note(f"(sample {key[1]} of epoch {key[0]}, read in a loader thread)")
            return _Failed(exc)


def _collate(samples: list[Any]) -> Any:
    for sample in samples:
        if isinstance(sample, _Failed):
            return sample
    return collate_batch(samples)


class _Deadline:
    """``timeout`` seconds for each batch, by ``SIGALRM`` (main thread only; elsewhere none)."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.on = timeout > 0 and threading.current_thread() is threading.main_thread()
        self._before: Any = None

    def __enter__(self) -> _Deadline:
        if self.on:
            self._before = signal.signal(signal.SIGALRM, self._fire)
        return self

    def _fire(self, signum: int, frame: Any) -> None:
        raise RuntimeError(f"{STALLED} after {self.timeout} seconds")

    def arm(self) -> None:
        if self.on:
            signal.setitimer(signal.ITIMER_REAL, self.timeout)

    def disarm(self) -> None:
        if self.on:
            signal.setitimer(signal.ITIMER_REAL, 0)

    def __exit__(self, *exc: object) -> None:
        if self.on:
            self.disarm()
            signal.signal(signal.SIGALRM, self._before)


def _stop_node(node: Any) -> None:
    """Stop one torchdata node's running iterator (its ``_it`` chain) and join its threads."""
    it = getattr(node, "_it", None)
    while it is not None:
        if callable(shutdown := getattr(it, "_shutdown", None)):
            shutdown()
        it = getattr(it, "_it", None)


class ThreadLoader:
    """An epoch of batches per iterator, from a torchdata.nodes thread pipeline (see the
    module); the epoch methods every backend's loader has (:mod:`loaderbench.data.loader`)."""

    def __init__(self, dataset: Dataset, plan: LoaderPlan, *, seed: int, train: bool):
        self.dataset, self.plan = dataset, plan
        self.batch_size = plan.batch_size
        self.drop_last = plan.drop_last and train
        # with ranks, this rank's share (val: every sample once across the ranks)
        n = len(dataset)  # type: ignore[arg-type]
        self.sampler = EpochSampler(n, shuffle=plan.shuffle and train, seed=seed, even=train)
        self.stuck: list[threading.Thread] = []  # threads that outlived close()
        self._nodes: list[Any] = []  # the running epoch's stages that own threads
        self._threads: list[threading.Thread] = []

    def __len__(self) -> int:
        n, b = len(self.sampler), self.batch_size  # this rank's share
        return n // b if self.drop_last else math.ceil(n / b)

    def set_epoch(self, epoch: int) -> None:
        self.sampler.set_epoch(epoch)

    def epoch_samples(self, epoch: int) -> int:
        n, b = self.sampler.share, self.batch_size  # a full epoch's, wherever a probe stops
        return n // b * b if self.drop_last else n

    def _pipeline(self) -> Any:
        import torchdata.nodes as tn

        mapper = tn.ParallelMapper(
            tn.IterableWrapper(list(self.sampler)),
            map_fn=_Fetch(self.dataset),
            num_workers=self.plan.num_workers,
            method="thread",
            in_order=True,
        )
        node = tn.Mapper(tn.Batcher(mapper, self.batch_size, drop_last=self.drop_last), _collate)
        if self.plan.pin_memory:
            node = tn.PinMemory(node)
        prefetcher = tn.Prefetcher(node, prefetch_factor=self.plan.in_flight)
        self._nodes = [mapper, prefetcher]  # stopped from the source on (see close)
        if self.plan.pin_memory:
            self._nodes.insert(1, node)
        return tn.Loader(prefetcher)

    def __iter__(self) -> Iterator[Any]:
        self._end()  # the last epoch's threads, winding down since its end: joined now
        before = set(threading.enumerate())
        it = iter(self._pipeline())  # starts the threads
        self._threads = [
            t for t in threading.enumerate() if t not in before and t.name.endswith(_TARGETS)
        ]
        with _Deadline(self.plan.timeout) as deadline:
            try:
                while True:
                    deadline.arm()
                    try:
                        batch = next(it)
                    except StopIteration:
                        return  # the threads end on their own (joined at the next epoch)
                    finally:
                        deadline.disarm()
                    if isinstance(batch, _Failed):
                        raise batch.exc
                    yield batch
            except BaseException:  # a failure, a stop signal, or closed mid-epoch: end now
                self._end()
                raise

    def _end(self) -> None:
        for node in self._nodes:
            _stop_node(node)
        self._nodes = []
        self.stuck = [t for t in self._threads if t.is_alive()]
        self._threads = self.stuck

    def close(self) -> None:
        """Stop every stage and join its threads; :attr:`stuck` lists any still alive (stuck
        in ``__getitem__``: nothing in the process can stop a thread)."""
        self._end()


def build(
    dataset: Dataset, plan: LoaderPlan, *, seed: int, train: bool = True, deterministic: bool = True
) -> ThreadLoader:
    """A :class:`ThreadLoader` over ``dataset`` (a TransformedDataset) as ``plan`` says;
    ``deterministic`` is process-wide, already set for these threads."""
    if isinstance(dataset, TransformedDataset):
        dataset.reseed_global = False  # threads share the global generator (see seeding)
    # torchdata gives each loader thread one intra-op thread (torch.set_num_threads(1) there:
    # per thread, the training step's own count is untouched), as a DataLoader worker gets.
    return ThreadLoader(dataset, plan, seed=seed, train=train)
