"""Datasets and the DataLoader built from the ``loader`` config."""

from loaderbench.data.base import DatasetPair, EpochSampler, TransformedDataset, sample_seed
from loaderbench.data.loader import LoaderPlan, build_loader, plan_loader

__all__ = [
    "DatasetPair",
    "EpochSampler",
    "LoaderPlan",
    "TransformedDataset",
    "build_loader",
    "plan_loader",
    "sample_seed",
]
