"""LZN datamodules: every one yields ``{"image": [B, C, H, W] in [-1, 1], "label": [B], ...}`` batches.

Pick one in a recipe's ``data:`` section (``class_path: DigitsDataModule``). ``batch_size`` is always the
global batch over all devices. Nothing is downloaded: missing files raise :class:`DatasetNotFoundError`, whose
message says where the data should be and how to get it.
"""

from lzn_lightning.data.base import LZNDataModule
from lzn_lightning.data.captions import CaptionedDigitsDataModule, CaptionedMNIST5kDataModule
from lzn_lightning.data.cifar10 import CIFAR10DataModule
from lzn_lightning.data.digits import DigitsDataModule
from lzn_lightning.data.errors import DatasetNotFoundError
from lzn_lightning.data.fashion_mnist import FashionMNISTDataModule
from lzn_lightning.data.features import CachedFeatures, FeatureDataset
from lzn_lightning.data.files import ImageFileDataset
from lzn_lightning.data.image_folder import ImageFolderDataModule
from lzn_lightning.data.imagenet import ImageNetDataModule
from lzn_lightning.data.in_memory import InMemorySplitDataModule
from lzn_lightning.data.mnist5k import MNIST5kDataModule
from lzn_lightning.data.split import stratified_split
from lzn_lightning.data.synthetic import SyntheticDataModule
from lzn_lightning.data.tensor import TensorImageDataset
from lzn_lightning.data.vader import VaderSentimentDataModule

__all__ = [
    "CIFAR10DataModule",
    "CachedFeatures",
    "CaptionedDigitsDataModule",
    "CaptionedMNIST5kDataModule",
    "DatasetNotFoundError",
    "DigitsDataModule",
    "FashionMNISTDataModule",
    "FeatureDataset",
    "ImageFileDataset",
    "ImageFolderDataModule",
    "ImageNetDataModule",
    "InMemorySplitDataModule",
    "LZNDataModule",
    "MNIST5kDataModule",
    "SyntheticDataModule",
    "TensorImageDataset",
    "VaderSentimentDataModule",
    "stratified_split",
]
