import numpy as np
import pytest
from PIL import Image

from zoo.errors import InvalidInputError
from zoo.inputs import load_images, load_texts


@pytest.fixture
def rgb():
    from skimage import data

    return data.chelsea()


def _saved(tmp_path, img, name):
    path = tmp_path / name
    img.save(path)
    return path


def test_modes_are_converted_not_refused(tmp_path, rgb):
    base = Image.fromarray(rgb)
    gray = base.convert("L")
    rgba = base.convert("RGBA")
    palette = base.convert("P", palette=Image.Palette.ADAPTIVE)
    sixteen = Image.fromarray(np.asarray(gray, dtype=np.uint16) * 257)
    assert sixteen.mode.startswith("I;16")
    paths = [
        _saved(tmp_path, gray, "gray.png"),
        _saved(tmp_path, rgba, "rgba.png"),
        _saved(tmp_path, palette, "palette.png"),
        _saved(tmp_path, sixteen, "sixteen.png"),
        _saved(tmp_path, base.convert("CMYK"), "cmyk.jpg"),
    ]
    images = load_images(paths + [gray, rgba, palette, sixteen])
    assert all(im.mode == "RGB" and im.size == base.size for im in images)
    # 16-bit is scaled to 8-bit, not clipped
    g16 = np.asarray(images[3])[..., 0].astype(int)
    assert np.abs(g16 - np.asarray(gray, dtype=int)).max() <= 1
    # fully opaque RGBA keeps its colours
    assert np.array_equal(np.asarray(images[1]), rgb)


def test_arrays(rgb):
    gray = rgb.mean(-1).astype(np.uint8)
    batch = np.stack([rgb, rgb])
    out = load_images(batch)
    assert len(out) == 2
    assert load_images(gray)[0].mode == "RGB"
    assert load_images(rgb[..., :1])[0].size == (rgb.shape[1], rgb.shape[0])
    f = load_images(rgb.astype(np.float32) / 255.0)[0]
    assert np.abs(np.asarray(f, dtype=int) - rgb).max() <= 1
    assert load_images((rgb.astype(np.uint16) * 257))[0].mode == "RGB"


def test_errors_name_the_input(tmp_path):
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(InvalidInputError, match="broken.jpg: not a readable image"):
        load_images([bad])
    with pytest.raises(InvalidInputError, match="nope.png: no such image file"):
        load_images(str(tmp_path / "nope.png"))
    with pytest.raises(InvalidInputError, match="No inputs given"):
        load_images([])
    with pytest.raises(InvalidInputError, match="No inputs given"):
        load_images(None)
    with pytest.raises(InvalidInputError, match="shape"):
        load_images(np.zeros((4, 4, 7), np.uint8)[None])
    with pytest.raises(InvalidInputError, match="input #0 is a int"):
        load_images([3])


def test_texts():
    assert load_texts("hello") == ["hello"]
    assert load_texts(["a", "b"]) == ["a", "b"]
    with pytest.raises(InvalidInputError, match="No inputs"):
        load_texts([])
    with pytest.raises(InvalidInputError, match="take strings"):
        load_texts(["a", 3])
