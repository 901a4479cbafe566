"""Evaluation: semantic (mIoU, boundary F), the BSDS500 benchmark, instance recall/AP.
Needs scipy (the ``data`` extra)."""
from segsort_ext.metrics.metrics import *  # noqa: F403
from segsort_ext.metrics.metrics import __all__
