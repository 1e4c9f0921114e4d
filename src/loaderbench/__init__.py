"""loaderbench: measure which DataLoader settings make PyTorch training fastest, here."""

# The one place the version is written: pyproject.toml reads it, and every run records it
# (the env.loaderbench tag).
__version__ = "0.1.0"
