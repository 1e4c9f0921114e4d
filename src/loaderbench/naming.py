"""Run names that say what varies, briefly: the MLflow runs table shows them in a narrow column.

In a sweep a child is named by its swept values only (``w2-spawn``, ``pin``, ``w0-r1``); the
constants live on the parent. A single run names its worker count and the loader knobs set away
from torch's defaults. Workers are ``w4`` (four worker processes) or, with
``loader.backend=threads``, ``t4`` (four loader threads).
"""

from __future__ import annotations

from typing import Any

from omegaconf import DictConfig, OmegaConf

from loaderbench import keys
from loaderbench.config import LoaderConfig

NAME_LIMIT = 40  # characters: a run name is a table cell in the MLflow UI
_SHORT = {
    "num_workers": "w",
    "batch_size": "bs",
    "prefetch_factor": "pf",
    "repeat": "r",
    "probe_batches": "probe",
    "ranks": "ddp",  # ``r`` already means a repeat
    "torch_threads": "tt",  # intra-op threads of the step (t4 is four loader threads)
}
# An emulated step: 20ms, 0.5ms/sample, from-1a2b3c4d; step_sync=step / none as sync / async.
_UNITS = {"step_ms": "{:g}ms", "step_per_sample_ms": "{:g}ms/sample", "step_from": "from-{:.8}"}
_SYNC = {"step": "sync", "none": "async"}
_FLAGS = {"pin_memory": "pin", "persistent_workers": "persist", "drop_last": "droplast"}


def label(key: str, value: Any) -> str:
    """One swept setting, compact: ``w2``, ``pin``/``nopin``, ``spawn``, ``lr=0.1``."""
    leaf = key.rsplit(".", 1)[-1]
    if leaf in _SHORT:
        return f"{_SHORT[leaf]}{value}"
    if leaf in _FLAGS:
        return _FLAGS[leaf] if value else "no" + _FLAGS[leaf]
    if leaf in _UNITS:
        return _UNITS[leaf].format(value)
    if leaf == "step_sync":
        return _SYNC.get(str(value), f"sync={value}")
    if leaf in ("multiprocessing_context", "decoder", "mode", "backend") or "." not in key:
        return str(value)  # a value that names itself, or a config group's option
    return f"{leaf}={value}"


def run_name(
    cfg: DictConfig, swept: list[str] | None = None, choices: dict[str, str] | None = None
) -> str:
    """A name made of what varies, e.g. ``w2-spawn``, at most 40 characters.

    In a sweep: the swept keys' values only (constants live on the parent), leaving out a key
    at null (torch's default, e.g. no prefetch_factor at num_workers=0). A swept config group
    is named by the option Hydra chose (``choices``, from ``hydra.runtime.choices``:
    ``loader=article_w8_spawn`` gives ``article_w8_spawn``), else by its node's ``name``. A
    single run: the worker count, any loader knob set away from torch's default, the ranks
    when there are several (``w2-ddp4``) and the step's threads where set (``tt2``).
    """
    if swept is None:
        lc, default = cfg.loader, LoaderConfig()
        swept = ["loader.num_workers"] + [
            f"loader.{k}"
            for k in (
                "multiprocessing_context",
                "pin_memory",
                "persistent_workers",
                "prefetch_factor",
                "batch_size",
            )
            if lc.get(k) != getattr(default, k)
        ]
        if OmegaConf.select(cfg, "trainer.ranks", default=1) != 1:
            swept.append("trainer.ranks")
        swept.append("trainer.torch_threads")  # left out at null, as any key
    threads = OmegaConf.select(cfg, keys.BACKEND_PARAM, default=None) == keys.THREADS
    parts = []
    for key in swept:
        if key == keys.BACKEND_PARAM:  # the backend is said by its workers: t4 or w4
            if keys.WORKERS_PARAM in swept:
                continue
            key = keys.WORKERS_PARAM
        value = OmegaConf.select(cfg, key, default=None)
        if value is None:
            continue
        if isinstance(value, DictConfig):  # a group (dataset=tensor): its option's name
            value = group_option(key, value, choices or {})
        parts.append(f"t{value}" if threads and key == keys.WORKERS_PARAM else label(key, value))
    return "-".join(parts)[:NAME_LIMIT] or "run"


def group_option(key: str, node: DictConfig, choices: dict[str, str]) -> str:
    """The option of config group ``key``: Hydra's choice (a group's options rarely carry a
    ``name``: ``transforms=augment``, ``model=resnet18``), else the node's ``name``, else the
    key itself."""
    group = key.lstrip("+~").replace(".", "/")
    if group in choices:
        return choices[group].rsplit("/", 1)[-1]
    return str(node.get("name", key.rsplit(".", 1)[-1]))
