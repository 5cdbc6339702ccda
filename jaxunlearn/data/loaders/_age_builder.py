"""A tfds builder that caches resized face images with ages as array_record files.

Imported only when the ``agedb`` loader runs (importing tfds takes about a second). The
builder is prepared with ``file_format="array_record"`` and read back through
``as_data_source()``, which needs no TensorFlow. Images are stored already resized, as PNG
bytes (tfds image features cannot encode raw arrays without TensorFlow).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import ClassVar

import numpy as np
import tensorflow_datasets as tfds

from jaxunlearn.data.loaders.images import png_bytes, read_image


class JaxunlearnAgeImages(tfds.core.GeneratorBasedBuilder):
    """Face images resized to size x size RGB, with the age in years; splits train/val/test.

    Each builder config names one (CSV content, image files, size, split seed) combination,
    so a changed CSV or image set, or another size, is prepared into a new folder instead of
    reusing a stale cache.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First version."}

    def __init__(self, *, rows: Mapping[str, Sequence[tuple[Path, float]]], size: int, **kwargs):
        self._rows = rows
        self._size = size
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            features=tfds.features.FeaturesDict(
                {
                    "image": tfds.features.Image(shape=(self._size, self._size, 3), encoding_format="png"),
                    "age": tfds.features.Scalar(dtype=np.float32),
                    "path": tfds.features.Text(),
                }
            ),
            disable_shuffling=True,  # keep the CSV's row order
            description="Face images with ages, resized; cached by jaxunlearn's agedb loader.",
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # local files only: nothing is downloaded
        return {name: self._generate_examples(rows) for name, rows in self._rows.items()}

    def _generate_examples(self, rows: Sequence[tuple[Path, float]]) -> Iterator[tuple[int, dict]]:
        for i, (path, age) in enumerate(rows):
            yield i, {"image": png_bytes(read_image(path, self._size)), "age": np.float32(age), "path": str(path)}
