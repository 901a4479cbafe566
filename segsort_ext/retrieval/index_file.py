"""The file format of :meth:`SegmentIndex.save <segsort_ext.retrieval.SegmentIndex.save>`,
and its validation on load.

A file is a ``torch.save`` zip of one dict of plain values and tensors, so it loads with
``weights_only=True`` (no code runs while reading it). Fields, version 1:

==================  ==========================================================================
``format``          ``"segsort_ext.SegmentIndex"`` (the magic)
``version``         1
``dim``             int, 1 <= dim <= ``SegmentIndex.MAX_DIM``
``metric``          ``'ip'`` or ``'cosine'``
``backend``         the requested backend: ``'auto'``, ``'faiss'`` or ``'torch'``
``ivf_nlist``       None (exact search) or int >= 1
``ivf_nprobe``      int >= 1
``search_block``    None or [query rows, bank rows], ints >= 1
``device``          where the index lived (a ``torch.device`` string); None: nothing added yet
``dtype``           ``'float32'`` or ``'float64'``: the stored vectors (IVF: float32)
``labels``          (M,) int64 in [0, ``SegmentIndex.MAX_CLASSES``)
``image_ids``       (M,) int64
``segment_ids``     (M,) int64
``vectors``         (M, dim) finite tensor of ``dtype`` (exact search), else None
``faiss_ivf``       1-D uint8 tensor, a serialised faiss ``IndexIVFFlat`` (IVF), else None
==================  ==========================================================================

Every file segsort_ext has written carries the magic and version 1, so there is no older
layout to read. ``faiss_ivf`` is checked by the IVF backend (it needs faiss); faiss' own
reader parses it, so a deliberately crafted blob is only as safe as faiss' reader.

Sizes are checked before anything is sized from them: an archive member larger than the
file, or a tensor that is not dense (a stride-0 view of a few stored elements claiming
billions of rows), is refused as corrupt, naming the file.
"""
from __future__ import annotations

import os
import zipfile
from typing import BinaryIO, Optional, Union

import torch

__all__ = ["FIELDS", "MAGIC", "VERSION", "corrupt", "read", "write"]

MAGIC = "segsort_ext.SegmentIndex"
VERSION = 1
ROW_FIELDS = ("labels", "image_ids", "segment_ids")  # (M,) int64 each
FIELDS = ("dim", "metric", "backend", "ivf_nlist", "ivf_nprobe", "search_block", "device", "dtype", *ROW_FIELDS,
          "vectors", "faiss_ivf")
STORAGE_DTYPES = {"float32": torch.float32, "float64": torch.float64}
METRICS = ("ip", "cosine")
BACKENDS = ("auto", "faiss", "torch")


def _shown(path) -> str:
    """The path as messages show it; TypeError for what is neither a path nor a file."""
    if isinstance(path, (str, os.PathLike)):
        return repr(os.fspath(path))
    if hasattr(path, "read") or hasattr(path, "write"):  # a binary file object, as torch.load/save take
        return repr(path)
    raise TypeError(f"path must be a str, an os.PathLike or a binary file object, got {type(path).__name__}")


def write(path: Union[str, os.PathLike, BinaryIO], fields: dict) -> None:
    _shown(path)
    torch.save({"format": MAGIC, "version": VERSION, **fields}, path)


def corrupt(path, reason) -> ValueError:
    return ValueError(f"corrupt SegmentIndex file {_shown(path)}: {reason}")


def read(path: Union[str, os.PathLike, BinaryIO], *, max_dim: int, max_classes: int) -> dict:
    """The fields of the file at ``path``, checked against the table above; tensors on the
    CPU. ``dtype`` is returned as a torch.dtype.

    Raises:
        TypeError: ``path`` is neither a path nor a file object.
        OSError: the file cannot be opened (missing, a directory, no permission).
        ValueError: ``not a SegmentIndex file (path): ...`` for a file torch cannot read
            or one without the magic (empty, truncated, unrelated); ``corrupt SegmentIndex
            file path: ...`` naming the field, for a missing or invalid field; a version
            newer than this segsort_ext reads.
    """
    shown = _shown(path)
    _check_archive(path, shown)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except OSError:
        raise
    except Exception as error:  # zip, unpickler and weights_only errors: whatever the bytes were
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(f"not a SegmentIndex file ({shown}): torch.load cannot read it ({reason})") from error
    if not isinstance(state, dict) or state.get("format") != MAGIC:
        what = "a dict without format = " + repr(MAGIC) if isinstance(state, dict) else f"a {type(state).__name__}"
        raise ValueError(f"not a SegmentIndex file ({shown}): it holds {what}")
    version = state.get("version")
    if isinstance(version, int) and not isinstance(version, bool) and version > VERSION:
        raise ValueError(f"{shown} has SegmentIndex format version {version}; this segsort_ext reads up to "
                         f"{VERSION}: upgrade segsort_ext to load it")
    try:
        _check_tensor_sizes(state)
        _check_fields(state, max_dim, max_classes)
    except ValueError as error:
        raise corrupt(path, error) from None
    return {name: state[name] for name in FIELDS} | {"dtype": STORAGE_DTYPES[state["dtype"]]}


def _check_archive(path, shown: str) -> None:
    """Before torch.load allocates anything: every member of the zip archive at ``path``
    (a path; a file object is checked after loading only) must fit in the file's own size.
    torch.save stores its members uncompressed, so a member that claims more bytes than the
    whole file has (a crafted or damaged central directory) is refused here rather than
    allocated."""
    if not isinstance(path, (str, os.PathLike)) or not os.path.isfile(path):
        return  # torch.load raises the OSError of a missing path or a directory
    size = os.path.getsize(path)
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError, EOFError):
        return  # not a zip: torch.load refuses it (or reads the legacy format) below
    for member in members:
        if member.file_size > size:
            raise ValueError(f"corrupt SegmentIndex file {shown}: archive member {member.filename!r} claims "
                             f"{member.file_size} bytes, more than the file's {size}")


def _check_tensor_sizes(state: dict) -> None:
    """Every tensor field must be dense (contiguous, its elements all in its storage),
    before anything is computed from it: a crafted file can hold a stride-0 tensor of one
    stored element that claims billions of rows, which the checks and the index would
    then expand (24 GiB for 3.2e9 int64 rows)."""
    for name in [*(n for n in FIELDS if n in state), *(n for n in state if n not in FIELDS)]:
        value = state[name]
        if not isinstance(value, torch.Tensor) or value.layout != torch.strided:
            continue
        needed = value.numel() * value.element_size()
        stored = value.untyped_storage().nbytes() - value.storage_offset() * value.element_size()
        if needed and (not value.is_contiguous() or needed > stored):
            raise ValueError(f"field {name} is not a dense tensor: shape {tuple(value.shape)}, strides "
                             f"{value.stride()}, {needed} bytes of elements in {max(stored, 0)} stored bytes")


def _int(state: dict, name: str, minimum: int, maximum: Optional[int] = None) -> None:
    value = state[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum \
            or (maximum is not None and value > maximum):
        bounds = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"field {name} must be an int {bounds}, got {value!r}")


def _choice(state: dict, name: str, choices) -> None:
    if not isinstance(state[name], str) or state[name] not in choices:
        raise ValueError(f"field {name} must be one of {choices}, got {state[name]!r}")


def _tensor(state: dict, name: str, dtype: torch.dtype, shape: Optional[tuple] = None,
            why: str = "") -> torch.Tensor:
    value = state[name]
    if not isinstance(value, torch.Tensor) or value.layout != torch.strided or value.dtype != dtype:
        got = value.dtype if isinstance(value, torch.Tensor) else type(value).__name__
        raise ValueError(f"field {name} must be a dense {dtype} tensor, got {got}")
    if shape is not None and tuple(value.shape) != shape:
        raise ValueError(f"field {name} must have shape {shape}{why}, got {tuple(value.shape)}")
    return value


def _none(state: dict, name: str, why: str) -> None:
    if state[name] is not None:
        raise ValueError(f"field {name} must be None {why}")


def _check_fields(state: dict, max_dim: int, max_classes: int) -> None:
    if not isinstance(state.get("version"), int) or isinstance(state["version"], bool) or state["version"] < 1:
        raise ValueError(f"field version must be an int >= 1, got {state.get('version')!r}")
    missing = [name for name in FIELDS if name not in state]
    if missing:
        raise ValueError(f"missing field{'s' if len(missing) > 1 else ''} {', '.join(missing)}")
    _int(state, "dim", 1, max_dim)
    _choice(state, "metric", METRICS)
    _choice(state, "backend", BACKENDS)
    if state["ivf_nlist"] is not None:
        _int(state, "ivf_nlist", 1)
    _int(state, "ivf_nprobe", 1)
    block = state["search_block"]
    if block is not None and not (isinstance(block, (list, tuple)) and len(block) == 2 and all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in block)):
        raise ValueError(f"field search_block must be None or [query rows, bank rows] >= 1, got {block!r}")
    _choice(state, "dtype", tuple(STORAGE_DTYPES))
    device = state["device"]
    if device is not None:
        try:
            torch.device(device if isinstance(device, str) else None)
        except (TypeError, RuntimeError):
            raise ValueError(f"field device must be None or a torch device string, got {device!r}") from None

    labels = _tensor(state, "labels", torch.int64)
    if labels.dim() != 1:
        raise ValueError(f"field labels must have shape (M,), got {tuple(labels.shape)}")
    num_rows = labels.shape[0]
    for name in ROW_FIELDS[1:]:
        _tensor(state, name, torch.int64, (num_rows,), " (as labels)")
    if num_rows:
        lowest, highest = (int(v) for v in torch.aminmax(labels))
        if lowest < 0 or highest >= max_classes:
            raise ValueError(f"field labels must hold class labels in [0, {max_classes}), found "
                             f"{lowest if lowest < 0 else highest}")

    if device is None:  # saved before anything was added
        if num_rows:
            raise ValueError(f"field device is None (nothing added) but labels has {num_rows} rows")
        _none(state, "vectors", "for an index that holds nothing")
        _none(state, "faiss_ivf", "for an index that holds nothing")
    elif state["ivf_nlist"] is None:
        _none(state, "faiss_ivf", "for an exact index (ivf_nlist None)")
        if state["vectors"] is None:
            raise ValueError("field vectors is None: an exact index stores its vectors")
        vectors = _tensor(state, "vectors", STORAGE_DTYPES[state["dtype"]], (num_rows, state["dim"]),
                          " (M rows as labels, dim columns)")
        if not bool(torch.isfinite(vectors).all()):
            raise ValueError("field vectors holds NaN or infinite entries")
    else:
        _none(state, "vectors", "for an IVF index (it stores faiss_ivf)")
        if state["dtype"] != "float32":
            raise ValueError(f"field dtype must be 'float32' for an IVF index, got {state['dtype']!r}")
