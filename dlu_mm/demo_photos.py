"""The photos the demo tools use: scikit-image's shipped images, one list.

``tools/demo_layer.py`` fits an upsampler to any of :data:`PHOTOS`; the demo
data generators (``tools/data/demo_shapes.py``) texture their images with
:data:`TEXTURE_PHOTOS`, which leaves out the photos full of discs or boxes
(:data:`WITH_SHAPES`): as textures they would put unannotated shapes into
the images. Other shipped images with such shapes (colorwheel,
checkerboard, clock) are in neither list.
"""
from typing import Tuple

import numpy as np

# In this order: the data generators pick texture photos by index, so the
# order of TEXTURE_PHOTOS is part of the demo data set's bytes.
PHOTOS: Tuple[str, ...] = (
    'astronaut', 'camera', 'coffee', 'chelsea', 'rocket', 'brick', 'grass',
    'gravel', 'immunohistochemistry', 'hubble_deep_field', 'page', 'text',
    'moon', 'coins', 'retina')
WITH_SHAPES = frozenset({'coins', 'retina'})
TEXTURE_PHOTOS: Tuple[str, ...] = tuple(p for p in PHOTOS
                                        if p not in WITH_SHAPES)


def load_photo(name: str) -> np.ndarray:
    """``skimage.data.<name>()`` as uint8 RGB (H, W, 3): grey photos
    repeated over 3 channels, an alpha channel dropped. ``name`` must be
    one of :data:`PHOTOS`."""
    if name not in PHOTOS:
        raise ValueError(f'photo {name!r} is not available; accepted: '
                         f'{", ".join(PHOTOS)}')
    import skimage.data
    img = np.asarray(getattr(skimage.data, name)())
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    return img[..., :3]
