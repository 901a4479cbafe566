"""Pretrained networks whose features and outputs the library's ops consume (layer 2:
imports torch and utils only; weights files are read on demand)."""
