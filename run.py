"""loaderbench from a checkout: ``python run.py`` is the ``loaderbench`` command over this
checkout's conf/ (see src/loaderbench/main.py). README.md says what it measures."""

from pathlib import Path

if __name__ == "__main__":  # a spawned worker imports the main module again: run nothing there
    from loaderbench.main import main

    main(config_dir=Path(__file__).resolve().parent / "conf")
