"""A stop signal is never lost, even where Python cannot raise it."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# The signal arrives inside an at-fork callback (as when SIGTERM meets logging's, at a worker's
# fork): Python prints the Interrupted raised there as "Exception ignored" and drops it.
SCRIPT = textwrap.dedent(
    """
    import os, signal, time
    from loaderbench.stopping import Interrupted, install_signal_handlers

    install_signal_handlers()
    os.register_at_fork(after_in_parent=lambda: os.kill(os.getpid(), signal.SIGTERM))
    try:
        if os.fork() == 0:
            os._exit(0)
        time.sleep(5)
        print("lost")
    except Interrupted as stop:
        print("stopped by", stop.name)
    """
)


@pytest.mark.slow  # a fresh interpreter: ~2 s
def test_a_stop_raised_inside_an_at_fork_callback_is_raised_again_in_the_main_thread():
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert proc.stdout.strip() == "stopped by SIGTERM", proc.stdout + proc.stderr
