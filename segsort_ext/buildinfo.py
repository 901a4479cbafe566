"""What the extension was built with.

    python -m segsort_ext.buildinfo                 # torch/CUDA versions, arch list, kernels in
    python -m segsort_ext.buildinfo --csrc-digest   # digest of csrc/ (DESIGN.md, GPU verification)
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
from pathlib import Path

import torch

from segsort_ext.ops import HAS_EXTENSION, extension_info

SOURCE_CSRC = Path(__file__).resolve().parents[1] / "csrc"


def csrc_digest(csrc: os.PathLike | str = SOURCE_CSRC) -> str:
    """sha256 over every file under csrc/, in sorted order of its path relative to csrc/:
    the path (utf-8), NUL, the file's bytes, NUL."""
    base = Path(csrc)
    if not base.is_dir():
        raise FileNotFoundError(f"csrc directory not found: {base}")
    digest = hashlib.sha256()
    for rel in sorted(os.path.relpath(os.path.join(d, f), base) for d, _, files in os.walk(base) for f in files):
        digest.update(rel.encode("utf-8") + b"\0")
        digest.update((base / rel).read_bytes() + b"\0")
    return digest.hexdigest()


def build_info() -> dict:
    """Versions and features of the installed build (and of the torch it runs under)."""
    info = {"extension": HAS_EXTENSION, "torch_runtime": torch.__version__,
            "cuda_runtime": torch.version.cuda, "gpu_available": torch.cuda.is_available()}
    info.update(extension_info())
    if SOURCE_CSRC.is_dir():
        info["source_csrc_digest"] = csrc_digest()
        if "csrc_digest" in info:
            info["build_is_current"] = info["csrc_digest"] == info["source_csrc_digest"]
    return info


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(prog="python -m segsort_ext.buildinfo", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--csrc-digest", action="store_true", help="print the digest of csrc/ and exit")
    parser.add_argument("--csrc", default=str(SOURCE_CSRC), help="csrc directory (default: this checkout's)")
    parser.add_argument("--json", action="store_true", help="print build info as JSON")
    args = parser.parse_args(argv)
    if args.csrc_digest:
        print(csrc_digest(args.csrc))
        return
    info = build_info()
    if args.json:
        print(json.dumps(info, indent=2))
        return
    for key, value in info.items():
        print(f"{key:20s} {value}")


if __name__ == "__main__":
    main()
