"""``python -m loaderbench ...``: the ``loaderbench`` command (see :mod:`loaderbench.main`)."""

if __name__ == "__main__":  # a spawned worker imports the main module again: run nothing there
    from loaderbench.main import main

    main()
