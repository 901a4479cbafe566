"""The readers of images and label maps."""
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from segsort_ext.datasets import read_label


def test_read_label_refuses_colour_images(tmp_path):
    Image.fromarray(np.zeros((3, 3, 3), dtype=np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(ValueError, match="palette"):
        read_label(tmp_path / "rgb.png")
    Image.fromarray(np.array([[0, 40000]], dtype=np.uint16)).save(tmp_path / "deep.png")
    assert read_label(tmp_path / "deep.png").tolist() == [[0, 40000]]  # 16-bit ids survive


def test_import_needs_no_optional_dependency():
    # Pillow and scipy are imported when a file is read, not with the package.
    code = ("import sys, segsort_ext.datasets; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'scipy', 'skimage', 'PIL', 'sklearn'}))")
    root = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=root)
    assert out.stdout.strip() == "[]"
