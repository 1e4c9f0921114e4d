"""loaderbench's configs. pyproject.toml installs this folder as the package ``loaderbench.conf``
(in the wheel and in an editable install), so Hydra finds it as ``pkg://loaderbench.conf`` and
``loaderbench-config list`` shows what is in it. No code lives here."""
