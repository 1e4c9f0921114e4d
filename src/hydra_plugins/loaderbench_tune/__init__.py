"""Hydra finds sweepers only in the ``hydra_plugins`` package; the search is in
:mod:`loaderbench.tune` (imported when a tune sweep starts, not at Hydra's plugin scan)."""

from __future__ import annotations

from typing import Any

from hydra.plugins.sweeper import Sweeper


class TuneSweeper(Sweeper):
    """``sweep=tune``: the staged search of :mod:`loaderbench.tune` through Hydra's launcher."""

    def __init__(self) -> None:
        self.config: Any = None
        self.launcher: Any = None

    def setup(self, *, hydra_context: Any, task_function: Any, config: Any) -> None:
        from hydra.core.plugins import Plugins

        self.config = config
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> Any:
        from loaderbench.tune import run_search

        return run_search(self.config, self.launcher, arguments)
