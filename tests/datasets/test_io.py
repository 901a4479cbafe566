"""The readers of images and label maps."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segsort_ext.datasets import read_image, read_label


def test_read_label_refuses_colour_images(tmp_path):
    Image.fromarray(np.zeros((3, 3, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="palette"):
        read_label(tmp_path / "rgb.png")
    Image.fromarray(np.array([[0, 40000]], dtype=np.uint16)).save(tmp_path / "deep.png")
    assert read_label(tmp_path / "deep.png").tolist() == [[0, 40000]]  # 16-bit ids survive


def test_read_image_scales_16_bit_greyscale_by_65535(tmp_path):
    # A 16-bit PNG used to be clipped at 255: 32768 read as 1.0 (issue 25).
    values = np.array([[0, 255, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I;16")
    image = read_image(tmp_path / "deep.png")
    assert image.shape == (3, 1, 4) and str(image.dtype) == "torch.float32"
    expected = values.astype(np.float64) / 65535
    for channel in image.numpy():
        np.testing.assert_allclose(channel[0], expected[0], atol=1e-7)
    assert abs(float(image[0, 0, 2]) - 0.5) < 1e-4  # not 1.0
    # 8-bit images are unchanged: divided by 255
    Image.fromarray(np.array([[0, 128, 255]], dtype=np.uint8)).save(tmp_path / "grey.png")
    np.testing.assert_allclose(read_image(tmp_path / "grey.png")[0, 0].numpy(), [0, 128 / 255, 1], atol=1e-7)


def test_read_image_refuses_32_bit_and_float_images_naming_the_file(tmp_path):
    Image.fromarray(np.array([[0, 100000]], dtype=np.int32)).save(tmp_path / "wide.tif")
    with pytest.raises(ValueError, match="wide.tif.*32-bit"):
        read_image(tmp_path / "wide.tif")
    Image.fromarray(np.array([[0.0, 0.5]], dtype=np.float32)).save(tmp_path / "float.tif")
    with pytest.raises(ValueError, match="float.tif.*floating-point"):
        read_image(tmp_path / "float.tif")


def test_import_needs_no_optional_dependency():
    # Pillow and scipy are imported when a file is read, not with the package.
    code = ("import sys, segsort_ext.datasets; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'skimage', 'PIL', 'sklearn'}))")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"
