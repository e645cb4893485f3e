"""Real benchmark datasets (LightGCN splits, RecBole atomic files, MovieLens) as Interactions."""

from recsys.datasets.registry import FORMATS, DatasetFormat, load_dataset

__all__ = ["FORMATS", "DatasetFormat", "load_dataset"]
