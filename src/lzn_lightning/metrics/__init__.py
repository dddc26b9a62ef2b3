"""The metric functions of the evaluation callbacks and the benchmarks, free of Lightning plumbing.

* :mod:`~lzn_lightning.metrics.fid`: :func:`frechet_distance` of two feature sets, :func:`features_of` a
  network, and clean-fid's :class:`InceptionFeatures`;
* :mod:`~lzn_lightning.metrics.classifier`: the :class:`SmallCNN` judge (:func:`train_classifier`,
  :func:`predict`, :func:`accuracy`), whose features also serve FID on small digits;
* :mod:`~lzn_lightning.metrics.probes`: :func:`linear_probe_accuracy` and :func:`knn_accuracy` of features;
* :func:`label_accuracy` of predicted labels;
* :func:`reconstruction_l2` and :func:`mean_reconstruction_l2` (the reference's Recon), defined next to
  ``LZNInference.reconstruct`` in :mod:`lzn_lightning.inference`.
"""

from lzn_lightning.inference import mean_reconstruction_l2, reconstruction_l2
from lzn_lightning.metrics.accuracy import label_accuracy
from lzn_lightning.metrics.classifier import SmallCNN, TrainedClassifier, accuracy, predict, train_classifier
from lzn_lightning.metrics.fid import InceptionFeatures, features_of, frechet_distance
from lzn_lightning.metrics.probes import knn_accuracy, linear_probe_accuracy

__all__ = [
    "InceptionFeatures",
    "SmallCNN",
    "TrainedClassifier",
    "accuracy",
    "features_of",
    "frechet_distance",
    "knn_accuracy",
    "label_accuracy",
    "linear_probe_accuracy",
    "mean_reconstruction_l2",
    "predict",
    "reconstruction_l2",
    "train_classifier",
]
