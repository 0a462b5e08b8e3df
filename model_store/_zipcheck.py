"""Bounds on zip archives (skops, npz) checked from their directories, before inflating.

Python's ``zipfile`` never yields more than a member's declared ``file_size`` (it truncates
the inflated stream there) and reads deflate output in bounded steps, so capping the
declared sizes caps what inflating can allocate. Other compression methods (bzip2, lzma
decompress a whole read at once) and encrypted members are refused. Each ``.npy`` member's
header is read (a few hundred bytes) and its shape times item size must be exactly what the
member holds, so numpy's loader never allocates for a shape the data does not back.
"""

from __future__ import annotations

import io
import zipfile

import numpy as np

from ._limits import StoreLimits
from ._refused import Refused

__all__ = ["check_zip"]

_METHODS = (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED)
_MAX_NPY_HEADER = 10_000


def _check_npy(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> None:
    with archive.open(info) as fh:
        try:
            version = np.lib.format.read_magic(fh)
            if version == (1, 0):
                shape, _, dtype = np.lib.format.read_array_header_1_0(
                    fh, max_header_size=_MAX_NPY_HEADER
                )
            elif version in ((2, 0), (3, 0)):
                shape, _, dtype = np.lib.format.read_array_header_2_0(
                    fh, max_header_size=_MAX_NPY_HEADER
                )
            else:
                raise Refused(f"member {info.filename!r}: npy format {version}")
        except Refused:
            raise
        except Exception as exc:  # numpy raises ValueError, SyntaxError, ... on bad headers
            raise Refused(f"member {info.filename!r}: bad npy header ({exc})") from exc
        header_end = fh.tell()
    if dtype.hasobject:
        raise Refused(f"member {info.filename!r}: object arrays need pickle")
    count = 1
    for n in shape:
        if not isinstance(n, int) or n < 0:
            raise Refused(f"member {info.filename!r}: bad shape {shape}")
        count *= n
    if count * dtype.itemsize != info.file_size - header_end:
        raise Refused(
            f"member {info.filename!r}: shape {shape} of {dtype} needs "
            f"{count * dtype.itemsize} bytes, the member holds {info.file_size - header_end}"
        )


def check_zip(data: bytes, limits: StoreLimits) -> zipfile.ZipFile:
    """Check an archive's members against the caps; return it open (the caller closes it).

    Raises
    ------
    Refused
        Not a zip, too many members, a member over the caps, an unsupported compression
        method, encryption, or an npy header that does not fit its data.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
        raise Refused(f"not a zip archive ({type(exc).__name__})") from exc
    try:
        members = archive.infolist()
        if len(members) > limits.max_zip_members:
            raise Refused(f"{len(members)} members, over the cap of {limits.max_zip_members}")
        total = 0
        for info in members:
            if info.compress_type not in _METHODS:
                raise Refused(f"member {info.filename!r}: compression {info.compress_type}")
            if info.flag_bits & 0x1:
                raise Refused(f"member {info.filename!r} is encrypted")
            total += info.file_size
            if total > limits.max_inflated_bytes:
                raise Refused(
                    f"members inflate to more than the cap of {limits.max_inflated_bytes} bytes"
                )
        for info in members:
            if info.filename.endswith(".npy"):
                _check_npy(archive, info)
    except BaseException:
        archive.close()
        raise
    return archive
