"""Normalisation presets of the datasets the papers use (docs/recipes.md#normalisation), on the 0..255 pixel scale, RGB.

The trainer uses these for the named datasets and a prepared dataset's ``meta.json`` (its own measured
mean/std) for any other. ``gluonfuse data prepare`` measures the same statistics (over every pixel of the
training split) and writes them to ``meta.json``.
"""

PRESETS = {
    "cifar10": {"mean": (125.307, 122.950, 113.865), "std": (62.993, 62.089, 66.705),
                "num_classes": 10, "image_shape": (3, 32, 32)},
    "cifar100": {"mean": (129.304, 124.070, 112.434), "std": (68.170, 65.392, 70.418),
                 "num_classes": 100, "image_shape": (3, 32, 32)},
    "svhn": {"mean": (111.609, 113.161, 120.565), "std": (50.498, 51.259, 50.244),
             "num_classes": 10, "image_shape": (3, 32, 32)},
    "imagenet": {"mean": (123.370, 112.757, 99.406), "std": (68.998, 66.093, 68.292),
                 "num_classes": 1000, "image_shape": (3, 224, 224)},
}
