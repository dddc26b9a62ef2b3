"""The metric functions of the evaluation callbacks and the benchmarks, free of Lightning plumbing.

* :mod:`~lzn_lightning.metrics.fid`: :func:`frechet_distance` of two feature sets, :func:`features_of` a
  network, and clean-fid's :class:`InceptionFeatures`;
* :mod:`~lzn_lightning.metrics.generation`: the paper's other generation metrics on features,
  :func:`precision_recall` (with :func:`manifold_radii`), :func:`inception_score`,
  :func:`spatial_frechet_distance` (sFID) and :func:`cmmd`;
* :mod:`~lzn_lightning.metrics.feature_sets`: networks returning several feature sets at once,
  :class:`InceptionFeatureSet` (pool3, spatial, probs of clean-fid's Inception) and
  :class:`CLIPImageEmbeddings` (CMMD), run over images by :func:`feature_sets_of`;
* :mod:`~lzn_lightning.metrics.classifier`: the :class:`SmallCNN` judge (:func:`train_classifier`,
  :func:`predict`, :func:`accuracy`), whose features also serve FID on small digits;
* :mod:`~lzn_lightning.metrics.probes`: :func:`linear_probe_accuracy`, :func:`knn_accuracy` and
  :func:`effective_rank` of features;
* :func:`label_accuracy` of predicted labels;
* :mod:`~lzn_lightning.metrics.reconstruction`: :func:`reconstruction_l2` and :func:`mean_reconstruction_l2`
  (the reference's Recon) of ``model.reconstruct``.
"""

from lzn_lightning.metrics.accuracy import label_accuracy
from lzn_lightning.metrics.classifier import SmallCNN, TrainedClassifier, accuracy, predict, train_classifier
from lzn_lightning.metrics.feature_sets import CLIPImageEmbeddings, InceptionFeatureSet, feature_sets_of
from lzn_lightning.metrics.fid import InceptionFeatures, features_of, frechet_distance
from lzn_lightning.metrics.generation import (
    cmmd,
    inception_score,
    manifold_radii,
    precision_recall,
    spatial_frechet_distance,
)
from lzn_lightning.metrics.probes import effective_rank, knn_accuracy, linear_probe_accuracy
from lzn_lightning.metrics.reconstruction import mean_reconstruction_l2, reconstruction_l2

__all__ = [
    "CLIPImageEmbeddings",
    "InceptionFeatureSet",
    "InceptionFeatures",
    "SmallCNN",
    "TrainedClassifier",
    "accuracy",
    "cmmd",
    "effective_rank",
    "feature_sets_of",
    "features_of",
    "frechet_distance",
    "inception_score",
    "knn_accuracy",
    "label_accuracy",
    "linear_probe_accuracy",
    "manifold_radii",
    "mean_reconstruction_l2",
    "precision_recall",
    "predict",
    "reconstruction_l2",
    "spatial_frechet_distance",
    "train_classifier",
]
