"""Whole row groups of a store file copied byte for byte into a new Parquet file, no decoding.

A compacted store file keeps one 10-minute time band per row group (storage.row_order), so most of a
window's rows lie in row groups wholly inside it. Those are copied as they are: their column chunks
are byte ranges of the source file, and a Parquet file is those ranges after a 4-byte magic, followed
by a footer (Thrift compact protocol) that gives each chunk's absolute offset. The new file's footer
is the source's with the other row groups removed and the kept ones' offsets shifted to where they
now sit (Parquet format spec, parquet.thrift: FileMetaData, RowGroup, ColumnChunk, ColumnMetaData).

pyarrow can read a footer but not write a subset of one, so the footer goes through a small, lossless
Thrift compact-protocol codec (monitor.thrift_compact): it decodes every field it finds and re-encodes
it unchanged, so fields it does not know about survive. Files that use
features whose offsets live outside the row groups (page indexes, bloom filters, encryption, chunks
in other files) are refused with SpliceRefused, and the caller re-encodes their rows instead.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from monitor.thrift_compact import Field, SpliceRefused, decode_footer_lazily, encode_footer

MAGIC = b"PAR1"
# parquet.thrift field ids used here.
_FMD_NUM_ROWS, _FMD_ROW_GROUPS = 3, 4
_RG_COLUMNS, _RG_NUM_ROWS, _RG_FILE_OFFSET, _RG_TOTAL_COMPRESSED, _RG_ORDINAL = 1, 3, 5, 6, 7
_CC_FILE_PATH, _CC_FILE_OFFSET, _CC_META = 1, 2, 3
_CC_OUTSIDE = frozenset({4, 5, 6, 7, 8, 9})
"""ColumnChunk fields that point outside the row group (page indexes) or mean encryption."""
_CMD_TOTAL_COMPRESSED, _CMD_DATA_PAGE, _CMD_INDEX_PAGE, _CMD_DICT_PAGE = 7, 9, 10, 11
_CMD_OUTSIDE = frozenset({14, 15})
"""ColumnMetaData fields that point outside the row group (bloom filter)."""


def _get(fields: Sequence[Field], fid: int) -> Any:
    return next((f[2] for f in fields if f[0] == fid), None)


def _set(fields: list[Field], fid: int, value: Any) -> None:
    for f in fields:
        if f[0] == fid:
            f[2] = value
            return
    raise SpliceRefused(f"field {fid} missing from a Parquet footer")


def read_footer(path: Path) -> list[Field]:
    """The decoded FileMetaData of the Parquet file at `path`, its row groups decoded when taken."""
    with open(path, "rb") as fh:
        fh.seek(-8, os.SEEK_END)
        size_magic = fh.read(8)
        if size_magic[4:] != MAGIC:
            raise SpliceRefused(f"{path} is not a plain Parquet file")
        (size,) = struct.unpack("<I", size_magic[:4])
        fh.seek(-8 - size, os.SEEK_END)
        return decode_footer_lazily(fh.read(size))


@dataclass(frozen=True)
class _Span:
    start: int
    end: int


def _group_span(group: list[Field]) -> _Span:
    """The byte range of one row group's column chunks; refused where a chunk lives elsewhere."""
    starts, ends = [], []
    for chunk in _get(group, _RG_COLUMNS)[1]:
        if _get(chunk, _CC_FILE_PATH) is not None or any(f[0] in _CC_OUTSIDE for f in chunk):
            raise SpliceRefused("column chunk with page index, encryption or another file")
        meta = _get(chunk, _CC_META)
        if meta is None or any(f[0] in _CMD_OUTSIDE for f in meta):
            raise SpliceRefused("column chunk without metadata or with a bloom filter")
        dictionary = _get(meta, _CMD_DICT_PAGE)
        start = dictionary if dictionary else _get(meta, _CMD_DATA_PAGE)
        starts.append(start)
        ends.append(start + _get(meta, _CMD_TOTAL_COMPRESSED))
    span = _Span(min(starts), max(ends))
    if sum(e - s for s, e in zip(starts, ends, strict=True)) != span.end - span.start:
        raise SpliceRefused("row group's column chunks are not contiguous")
    return span


def _shift(group: list[Field], delta: int, ordinal: int) -> None:
    """Move every absolute offset of a row group by `delta` bytes and renumber it."""
    for fid, _, value in group:
        if fid == _RG_FILE_OFFSET:
            _set(group, fid, value + delta)
        elif fid == _RG_ORDINAL:
            _set(group, fid, ordinal)
    for chunk in _get(group, _RG_COLUMNS)[1]:
        if _get(chunk, _CC_FILE_OFFSET):
            _set(chunk, _CC_FILE_OFFSET, _get(chunk, _CC_FILE_OFFSET) + delta)
        meta = _get(chunk, _CC_META)
        for fid in (_CMD_DATA_PAGE, _CMD_INDEX_PAGE, _CMD_DICT_PAGE):
            if _get(meta, fid):
                _set(meta, fid, _get(meta, fid) + delta)


def copy_row_groups(source: Path, footer: list[Field], keep: Sequence[int], out: BinaryIO) -> int:
    """Write a Parquet file to `out` holding only row groups `keep` (ascending) of `source`, unchanged.

    Args:
        source: the Parquet file.
        footer: its decoded footer (read_footer).
        keep: row group indices to keep, in file order.
        out: a binary file opened for writing at position 0.

    Returns:
        The rows written.

    Raises:
        SpliceRefused: the file uses a feature this copy does not carry (see the module doc).
    """
    groups = _get(footer, _FMD_ROW_GROUPS)
    if groups is None:
        raise SpliceRefused("footer without row groups")
    elem, items = groups
    picked = [items[i] for i in keep]
    spans = [_group_span(g) for g in picked]
    new_footer = [[fid, kind, value] for fid, kind, value in footer]
    kept: list[list[Field]] = []
    position = len(MAGIC)
    for group, span in zip(picked, spans, strict=True):
        copy = _deep_copy(group)
        _shift(copy, position - span.start, len(kept))
        kept.append(copy)
        position += span.end - span.start
    rows = sum(_get(g, _RG_NUM_ROWS) for g in kept)
    _set(new_footer, _FMD_ROW_GROUPS, (elem, kept))
    _set(new_footer, _FMD_NUM_ROWS, rows)
    out.write(MAGIC)
    with open(source, "rb") as src:
        for span in spans:
            _copy_range(src, out, span)
    encoded = encode_footer(new_footer)
    out.write(encoded)
    out.write(struct.pack("<I", len(encoded)))
    out.write(MAGIC)
    return rows


def _copy_range(src: BinaryIO, out: BinaryIO, span: _Span) -> None:
    src.seek(span.start)
    left = span.end - span.start
    while left:
        block = src.read(min(left, 1 << 22))
        if not block:
            raise SpliceRefused("source file shorter than its footer says")
        out.write(block)
        left -= len(block)


def _deep_copy(value: Any) -> Any:
    """A copy of a decoded struct or value whose lists can be changed without touching the source."""
    if isinstance(value, list):
        return [_deep_copy(v) for v in value]
    if isinstance(value, tuple):
        return (value[0], [_deep_copy(v) for v in value[1]])
    return value
