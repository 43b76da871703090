"""Data modules: hub image-classification datasets as flat uint8 tensors, scaled/binarized on device."""

from datamodules.errors import DataError
from datamodules.hf_image import HFImageDataModule
from datamodules.mnist import FashionMNISTDataModule, MNISTDataModule

__all__ = ["DataError", "FashionMNISTDataModule", "HFImageDataModule", "MNISTDataModule"]
