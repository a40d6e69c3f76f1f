"""dlu_mm.demo_photos: the one list of photos behind tools/demo_layer.py
(any photo) and the demo data generators (textures without shapes)."""
import numpy as np
import pytest

from dlu_mm.demo_photos import (PHOTOS, TEXTURE_PHOTOS, WITH_SHAPES,
                                load_photo)


def test_texture_photos_are_the_photos_without_shapes_in_order():
    assert WITH_SHAPES < set(PHOTOS) and len(set(PHOTOS)) == len(PHOTOS)
    assert TEXTURE_PHOTOS == tuple(p for p in PHOTOS if p not in WITH_SHAPES)
    # the data generators pick textures by index: reordering this tuple
    # changes every generated demo image
    assert TEXTURE_PHOTOS == (
        'astronaut', 'camera', 'coffee', 'chelsea', 'rocket', 'brick',
        'grass', 'gravel', 'immunohistochemistry', 'hubble_deep_field',
        'page', 'text', 'moon')


@pytest.mark.parametrize('name', PHOTOS)
def test_every_photo_loads_as_uint8_rgb(name):
    img = load_photo(name)
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert min(img.shape[:2]) >= 128 and img.std() > 10  # a photo, not flat


def test_unknown_photo_names_the_accepted_ones():
    with pytest.raises(ValueError, match="photo 'lena' is not available; "
                       "accepted: astronaut, camera"):
        load_photo('lena')
