import pytest

from segsort_ext.datasets import BSDS500, VOCSegmentation

from .datasets_testing import BSDS_ROOT, VOC_ROOT


@pytest.fixture(scope="module")
def voc():
    """The real VOC 2012 sample (66 images)."""
    if not (VOC_ROOT / "JPEGImages").is_dir():
        pytest.skip(f"VOC 2012 sample not found at {VOC_ROOT}")
    return VOCSegmentation(VOC_ROOT)


@pytest.fixture(scope="module")
def bsds():
    """The real BSDS500 val sample (50 images)."""
    if not (BSDS_ROOT / "images" / "val").is_dir():
        pytest.skip(f"BSDS500 sample not found at {BSDS_ROOT}")
    return BSDS500(BSDS_ROOT, split="val")
