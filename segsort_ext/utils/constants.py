"""Constants shared by every layer (one home each)."""

#: Label of ignored pixels on input (PASCAL VOC's void border); ignored ids are -1 on output.
IGNORE_INDEX = 255

#: eps of every L2 normalisation (as ``F.normalize``): a zero vector stays zero, never NaN.
NORM_EPS = 1e-12
