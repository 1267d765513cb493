"""Domain-randomised training volumes: seeded, labelled like the bundled model, random contrast."""

import numpy as np
from scipy import ndimage

from napari_fcnseg.core.synth import synthetic_volume


def test_same_seed_same_volume_and_labels_follow_the_bundled_classes():
    a, b = synthetic_volume(7, (5, 64, 64)), synthetic_volume(7, (5, 64, 64))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.image, synthetic_volume(8, (5, 64, 64)).image)
    assert a.image.shape == a.labels.shape == (5, 64, 64)
    assert a.image.dtype == np.float32 and 0.0 <= a.image.min() and a.image.max() <= 1.0
    assert set(np.unique(a.labels)) <= {0, 1, 2}


def test_contrast_is_random_so_only_shape_and_context_tell_the_classes_apart():
    lesion_darker, organ_means = [], []
    for seed in range(40):
        v = synthetic_volume(seed, (5, 96, 96))
        organ, lesion = v.labels == 1, v.labels == 2
        if organ.sum() > 200:
            organ_means.append(float(v.image[organ].mean()))
        if lesion.sum() > 20 and organ.sum() > 200:
            lesion_darker.append(float(v.image[lesion].mean()) < float(v.image[organ].mean()))
    assert len(lesion_darker) >= 10
    assert 0.2 <= np.mean(lesion_darker) <= 0.8  # lesions both darker and brighter
    assert np.std(organ_means) > 0.15  # the organ has no typical intensity
    assert len(organ_means) >= 30  # most volumes hold an organ, a few hold none


def test_lesions_lie_inside_the_organ_region():
    for seed in range(10):
        v = synthetic_volume(seed, (5, 96, 96))
        lesion = v.labels == 2
        if lesion.any():
            ring = ndimage.binary_dilation(lesion, iterations=1) & ~lesion
            assert (v.labels[ring] != 0).mean() > 0.5  # surrounded mostly by organ
