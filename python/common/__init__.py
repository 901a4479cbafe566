"""The code the programs of python/ share (torchvision ``references/<task>/`` style: the
programs live in one folder per task and import only this package, ``segsort_ext`` and
third-party packages -- never one another).

* ``args``, ``backbones``, ``data``, ``evaluate``, ``run``: the training recipes' options,
  networks, data sets, evaluation and run folder (checkpoints, ``--resume``);
* ``bsds_data``, ``bsds_grouping``, ``bsds_pictures``: BSDS500 images at a working size,
  grouping of feature maps into segmentations, and the pictures of the BSDS programs.

A program puts ``python/`` on ``sys.path`` first (``Path(__file__).resolve().parents[1]``).
"""
