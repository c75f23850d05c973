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
        load_images(np.zeros((5, 6, 7), np.uint8)[None])  # 7 channels: no channel axis at either end
    with pytest.raises(InvalidInputError, match="input #0 is a int"):
        load_images([3])


def test_texts():
    assert load_texts("hello") == ["hello"]
    assert load_texts(["a", "b"]) == ["a", "b"]
    with pytest.raises(InvalidInputError, match="No inputs"):
        load_texts([])
    with pytest.raises(InvalidInputError, match="take strings"):
        load_texts(["a", 3])


def _one_line_error(fn, *args, match=None):
    with pytest.raises(InvalidInputError, match=match) as info:
        fn(*args)
    assert "\n" not in str(info.value) and str(info.value)
    return str(info.value)


def test_array_layout_rule(rgb):
    """2-D and 3-D arrays are ONE image (HxWxC or CxHxW by a channel axis of 1/3/4 at one end); 4-D is a batch."""
    import torch

    small = rgb[:40, :50]
    want = np.asarray(load_images(small)[0])
    chw = np.ascontiguousarray(small.transpose(2, 0, 1))
    for one in (chw, torch.from_numpy(small), torch.from_numpy(chw), torch.from_numpy(chw).float() / 255.0):
        out = load_images(one)
        assert len(out) == 1, type(one)
        assert np.abs(np.asarray(out[0], dtype=int) - want).max() <= 1
    assert load_images(small[..., 0].T[None])[0].size == (40, 50)  # 1xHxW: gray CxHxW
    # batches: NHWC and NCHW, numpy or torch; a list holds one image per item
    for batch in (np.stack([small] * 3), np.stack([chw] * 3), torch.from_numpy(np.stack([chw] * 3)), [chw, torch.from_numpy(chw)]):
        out = load_images(batch)
        assert len(out) == len(batch) and all(np.array_equal(np.asarray(im), want) for im in out)
    # a channel-sized axis at both ends, or at neither (a batch of grayscale images), is not guessed
    assert "ambiguous" in _one_line_error(load_images, np.zeros((3, 40, 3), np.uint8))
    assert "arr[..., None]" in _one_line_error(load_images, np.zeros((10, 28, 28), np.uint8))
    assert len(load_images(np.zeros((10, 28, 28), np.uint8)[..., None])) == 10
    _one_line_error(load_images, np.zeros((2, 3, 40, 3), np.uint8), match="ambiguous")
    _one_line_error(load_images, [np.zeros((10, 28, 28), np.uint8)], match="channels")
    _one_line_error(load_images, np.zeros((5,), np.uint8), match="shape")
    _one_line_error(load_images, np.zeros((1, 2, 8, 8, 3), np.uint8), match="shape")


def test_bad_image_values_are_refused(rgb):
    import torch

    assert "empty" in _one_line_error(load_images, np.zeros((0, 0, 3), np.uint8))
    _one_line_error(load_images, np.zeros((3, 0, 5), np.uint8), match="empty")
    _one_line_error(load_images, Image.new("RGB", (0, 0)), match="empty")
    nan = np.full((8, 8, 3), np.nan, np.float32)
    assert "NaN" in _one_line_error(load_images, nan)
    _one_line_error(load_images, torch.full((3, 8, 8), float("inf")), match="NaN or infinite")
    _one_line_error(load_images, np.array([[None]]), match="object")
    _one_line_error(load_images, np.array([["a", "b"], ["c", "d"]]), match="not numbers")
    # a normalised tensor (negative values) is not an image
    normalised = (torch.from_numpy(rgb[:32, :32]).permute(2, 0, 1).float() / 255 - 0.5) / 0.25
    assert "normalised" in _one_line_error(load_images, normalised)
    assert "empty string" in _one_line_error(load_images, "")
    _one_line_error(load_images, ["  "], match="empty string")


def test_texts_refuse_image_files(tmp_path, rgb):
    img = tmp_path / "img.png"
    Image.fromarray(rgb).save(img)
    notes = tmp_path / "notes"
    notes.write_text("hello")
    assert "takes text" in _one_line_error(load_texts, str(img))
    _one_line_error(load_texts, ["a text", "cat.JPG"], match="input #1")
    _one_line_error(load_texts, str(notes), match="file name")
    spaced = tmp_path / "my photo.png"
    Image.fromarray(rgb).save(spaced)
    _one_line_error(load_texts, str(spaced), match="file name")
    fine = ["I saved it as cat.png", "and/or", "", "see https://example.com/a page", "3.14"]
    assert load_texts(fine) == fine


def test_texts_refuse_an_existing_file_named_without_a_folder(tmp_path, monkeypatch):
    """`zoo predict RUN texts.csv` in the data's folder: the file's name is not the text to classify."""
    (tmp_path / "texts.csv").write_text("text,label\nhello,a\n")
    monkeypatch.chdir(tmp_path)
    _one_line_error(load_texts, "texts.csv", match="file name")
    assert load_texts(["other.csv", "3.14", "texts"]) == ["other.csv", "3.14", "texts"]  # no such file: text


def test_an_image_above_pillows_pixel_limit_is_one_line(tmp_path, rgb, monkeypatch):
    """Pillow's DecompressionBombError (an image above 2 x MAX_IMAGE_PIXELS) escaped as a traceback."""
    big = tmp_path / "big.png"
    Image.fromarray(rgb).save(big)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)
    _one_line_error(load_images, str(big), match="too many pixels")


def test_cli_predict_checks_its_images_one_at_a_time(tmp_path, monkeypatch):
    """zoo predict checks every image before the model loads; it used to decode them all into one list
    (zoo predict MODEL photos/*.jpg held every photo's pixels at once: ~9 MB per 2000x1500 photo)."""
    import weakref

    import numpy as np
    from PIL import Image

    import zoo
    import zoo.inputs as I
    from zoo.cli import main

    files = []
    for j in range(12):
        f = tmp_path / f"{j}.png"
        Image.fromarray(np.full((16, 16, 3), j * 20, dtype=np.uint8)).save(f)
        files.append(str(f))
    alive = {"now": 0, "most": 0}

    def gone() -> None:
        alive["now"] -= 1

    real = I._to_rgb

    def tracked(img, name):
        out = real(img, name)
        alive["now"] += 1
        alive["most"] = max(alive["most"], alive["now"])
        weakref.finalize(out, gone)
        return out

    class Loaded(Exception):
        pass

    def stop(*a, **k):
        raise Loaded

    monkeypatch.setattr(I, "_to_rgb", tracked)
    monkeypatch.setattr(zoo, "load", stop)
    with pytest.raises(Loaded):  # the check ran over all 12 before the model load
        main(["predict", "timm:efficientnet_lite0.pypi_in1k", *files])
    assert alive["most"] <= 2, f"{alive['most']} decoded images alive at once"
    # and it still names a bad file before the model loads
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert I.check_images(files[:2]) == 2
    with pytest.raises(InvalidInputError, match="bad.png: not a readable image"):
        I.check_images([*files, str(tmp_path / "bad.png")])


def test_alpha_is_dropped_as_the_sources_loaders_drop_it(tmp_path, rgb):
    """RGBA, LA and a palette with a transparent index read as PIL's convert("RGB") reads them, the way
    torchvision's pil_loader (ImageFolder), timm's ImageDataset, keras.utils.load_img, tf.io.decode_image
    (channels=3) and transformers' load_image (its pipelines) read them: alpha dropped, not blended on white."""
    folder = pytest.importorskip("torchvision.datasets.folder")
    px = rgb[:32, :32]
    ramp = np.tile(np.linspace(0, 255, 32).astype(np.uint8), (32, 1))  # fully transparent to opaque
    palette = Image.fromarray(px).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.info["transparency"] = 3
    images = {
        "rgba.png": Image.fromarray(np.dstack([px, ramp]), "RGBA"),
        "la.png": Image.fromarray(np.dstack([px[..., 0], ramp]), "LA"),
        "palette.png": palette,
    }
    for name, img in images.items():
        path = _saved(tmp_path, img, name)
        want = np.asarray(folder.pil_loader(path))
        assert np.array_equal(np.asarray(load_images(path)[0]), want), name
        assert np.array_equal(np.asarray(load_images(Image.open(path))[0]), want), name
    # an RGBA array: its colour channels as they are
    assert np.array_equal(np.asarray(load_images(np.dstack([px, ramp]))[0]), px)


def test_integer_arrays_of_16_bit_values_are_scaled_not_clipped(rgb):
    """An int32 array or tensor of 16-bit values (older torchvision.io.decode_png, np.asarray of a PIL 'I' image)
    reads as the same image in uint16 does, not clipped to white; values no image holds are refused in one line."""
    import torch

    want = np.asarray(load_images(rgb)[0])
    sixteen = rgb.astype(np.int32) * 257
    for arr in (sixteen, torch.from_numpy(sixteen), sixteen.astype(np.int64), sixteen.astype(np.uint16)):
        assert np.array_equal(np.asarray(load_images(arr)[0]), want), arr.dtype
    assert np.array_equal(np.asarray(load_images(rgb.astype(np.int64))[0]), want)  # 8-bit values as they are
    assert "0-65535" in _one_line_error(load_images, np.full((8, 8), -5, np.int16))
    _one_line_error(load_images, np.full((8, 8), 70000, np.int32), match="uint8")


def test_float_and_32_bit_images_follow_the_array_value_rules(tmp_path, rgb):
    """A PIL 'F' image (a float TIFF) in [0, 1] is scaled by 255 as a float array is, not read as 0-255 (black);
    an 'I' image reads as its int32 array does; out-of-range values are refused in one line, naming the file."""
    gray = rgb[..., 1]
    want = np.asarray(load_images(gray)[0])
    unit = Image.fromarray(gray.astype(np.float32) / 255.0)
    assert unit.mode == "F"
    for img in (unit, _saved(tmp_path, unit, "unit.tif"), Image.fromarray(gray.astype(np.float32))):
        assert np.abs(np.asarray(load_images(img)[0], dtype=int) - want).max() <= 1
    sixteen = Image.fromarray(gray.astype(np.int32) * 257)
    assert sixteen.mode == "I" and np.array_equal(np.asarray(load_images(sixteen)[0]), want)
    path = _saved(tmp_path, Image.fromarray(gray.astype(np.float32) - 100.0), "normalised.tif")
    assert "normalised.tif holds values" in _one_line_error(load_images, path)
    _one_line_error(load_images, Image.fromarray(np.full((8, 8), np.nan, np.float32)), match="NaN")


def test_exif_orientation_is_applied_only_when_asked(tmp_path, rgb):
    """Pixels as stored by default (torchvision's pil_loader, timm, keras.utils.load_img do not turn photos);
    exif=True turns files and PIL images upright as PIL.ImageOps.exif_transpose does (transformers' load_image)."""
    from PIL import ImageOps

    exif = Image.Exif()
    exif[0x0112] = 6  # stored sideways
    path = tmp_path / "phone.jpg"
    Image.fromarray(rgb).save(path, exif=exif, quality=95)
    with Image.open(path) as im:
        stored, upright = np.asarray(im.convert("RGB")), np.asarray(ImageOps.exif_transpose(im).convert("RGB"))
    assert stored.shape != upright.shape
    assert np.array_equal(np.asarray(load_images(path)[0]), stored)
    assert np.array_equal(np.asarray(load_images(path, exif=True)[0]), upright)
    assert np.array_equal(np.asarray(load_images(Image.open(path), exif=True)[0]), upright)
    assert np.array_equal(np.asarray(load_images(Image.fromarray(rgb), exif=True)[0]), rgb)  # no tag: as it is


def test_a_float_image_overshooting_1_is_refused_not_read_as_0_to_255():
    """A [0, 1] tensor resized bicubically overshoots 1 a little (max 1.03 here, min above 0): it was read as a
    [0, 255] image and came out black; the two readings cannot be told apart, so it is refused in one line."""
    import torch
    from skimage import data

    x = torch.from_numpy(data.rocket()).permute(2, 0, 1).float()[None] / 255.0
    resized = torch.nn.functional.interpolate(x, size=(100, 150), mode="bicubic", antialias=True)[0]
    assert float(resized.min()) >= 0.0
    assert 1.0 < float(resized.max()) < 1.1
    assert "arr.clip(0, 1)" in _one_line_error(load_images, resized)
    out = np.asarray(load_images(resized.clamp(0.0, 1.0))[0], dtype=float)
    assert abs(out.mean() - float(resized.clamp(0.0, 1.0).mean()) * 255) < 1
    assert np.asarray(load_images(np.full((4, 4), 2.0, np.float32))[0]).max() == 2  # [0, 255] from 2 up: as it is
