"""loaderbench: measure which DataLoader settings make PyTorch training fastest, here."""

__version__ = "0.1.0"
