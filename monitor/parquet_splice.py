"""Whole row groups of a store file copied byte for byte into a new Parquet file, no decoding.

A compacted store file keeps one 10-minute time band per row group (storage.segments), so most of a
window's rows lie in row groups wholly inside it. Those are copied as they are: their column chunks
are byte ranges of the source file, and a Parquet file is those ranges after a 4-byte magic, followed
by a footer (Thrift compact protocol) that gives each chunk's absolute offset. The new file's footer
is the source's with the other row groups removed and the kept ones' offsets shifted to where they
now sit (Parquet format spec, parquet.thrift: FileMetaData, RowGroup, ColumnChunk, ColumnMetaData).

pyarrow can read a footer but not write a subset of one, so this module carries a small, lossless
Thrift compact-protocol codec (apache/thrift doc/specs/thrift-compact-protocol.md): it decodes every
field it finds and re-encodes it unchanged, so fields it does not know about survive. Files that use
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

MAGIC = b"PAR1"
_STOP, _TRUE, _FALSE, _I8, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)

# parquet.thrift field ids used here.
_FMD_NUM_ROWS, _FMD_ROW_GROUPS = 3, 4
_RG_COLUMNS, _RG_NUM_ROWS, _RG_FILE_OFFSET, _RG_TOTAL_COMPRESSED, _RG_ORDINAL = 1, 3, 5, 6, 7
_CC_FILE_PATH, _CC_FILE_OFFSET, _CC_META = 1, 2, 3
_CC_OUTSIDE = frozenset({4, 5, 6, 7, 8, 9})
"""ColumnChunk fields that point outside the row group (page indexes) or mean encryption."""
_CMD_TOTAL_COMPRESSED, _CMD_DATA_PAGE, _CMD_INDEX_PAGE, _CMD_DICT_PAGE = 7, 9, 10, 11
_CMD_OUTSIDE = frozenset({14, 15})
"""ColumnMetaData fields that point outside the row group (bloom filter)."""


class SpliceRefused(Exception):
    """The file's row groups cannot be copied on their own; re-encode its rows instead."""


Field = list[Any]
"""One decoded struct field: [field id, compact type, value]."""


class _Decoder:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def byte(self) -> int:
        value = self.data[self.pos]
        self.pos += 1
        return value

    def varint(self) -> int:
        shift = result = 0
        while True:
            b = self.byte()
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result
            shift += 7

    def zigzag(self) -> int:
        n = self.varint()
        return (n >> 1) ^ -(n & 1)

    def value(self, kind: int) -> Any:
        if kind in (_TRUE, _FALSE):  # only inside lists and sets: one byte each
            return self.byte()
        if kind == _I8:
            return self.byte()
        if kind in (_I16, _I32, _I64):
            return self.zigzag()
        if kind == _DOUBLE:
            self.pos += 8
            return self.data[self.pos - 8 : self.pos]
        if kind == _BINARY:
            n = self.varint()
            self.pos += n
            return self.data[self.pos - n : self.pos]
        if kind in (_LIST, _SET):
            head = self.byte()
            size, elem = head >> 4, head & 0x0F
            if size == 15:
                size = self.varint()
            return (elem, [self.value(elem) for _ in range(size)])
        if kind == _STRUCT:
            return self.struct()
        raise SpliceRefused(f"Thrift type {kind} in a Parquet footer")

    def struct(self) -> list[Field]:
        fields: list[Field] = []
        last = 0
        while True:
            head = self.byte()
            kind = head & 0x0F
            if kind == _STOP:
                return fields
            delta = head >> 4
            fid = last + delta if delta else self.zigzag()
            value = kind == _TRUE if kind in (_TRUE, _FALSE) else self.value(kind)
            fields.append([fid, kind, value])
            last = fid


class _Encoder:
    def __init__(self) -> None:
        self.out = bytearray()

    def varint(self, n: int) -> None:
        while n > 0x7F:
            self.out.append((n & 0x7F) | 0x80)
            n >>= 7
        self.out.append(n)

    def zigzag(self, n: int) -> None:
        self.varint((n << 1) ^ (n >> 63))

    def value(self, kind: int, value: Any) -> None:
        if kind in (_TRUE, _FALSE, _I8):
            self.out.append(value)
        elif kind in (_I16, _I32, _I64):
            self.zigzag(value)
        elif kind == _DOUBLE:
            self.out += value
        elif kind == _BINARY:
            self.varint(len(value))
            self.out += value
        elif kind in (_LIST, _SET):
            elem, items = value
            if len(items) < 15:
                self.out.append(len(items) << 4 | elem)
            else:
                self.out.append(0xF0 | elem)
                self.varint(len(items))
            for item in items:
                self.value(elem, item)
        else:
            self.struct(value)

    def struct(self, fields: Sequence[Field]) -> None:
        last = 0
        for fid, kind, value in fields:
            if kind in (_TRUE, _FALSE):
                kind = _TRUE if value else _FALSE
            if 0 < fid - last <= 15:
                self.out.append((fid - last) << 4 | kind)
            else:
                self.out.append(kind)
                self.zigzag(fid)
            if kind not in (_TRUE, _FALSE):
                self.value(kind, value)
            last = fid
        self.out.append(_STOP)


def decode_footer(data: bytes) -> list[Field]:
    """A Thrift compact-encoded struct (a Parquet FileMetaData) as nested [id, type, value] fields."""
    return _Decoder(data).struct()


class RowGroups:
    """A footer's row groups, each decoded only when taken: a day file of serving histograms has 5,184
    (a 2.7 MB footer, 2 s of CPU to decode whole in Python), of which a 1 h export keeps 216."""

    def __init__(self, data: bytes, starts: list[int]) -> None:
        """`starts`: where each RowGroup struct begins in `data`."""
        self._data, self._starts = data, starts

    def __len__(self) -> int:
        return len(self._starts)

    def __getitem__(self, i: int) -> list[Field]:
        decoder = _Decoder(self._data)
        decoder.pos = self._starts[i]
        return decoder.struct()


def decode_footer_lazily(data: bytes) -> list[Field]:
    """decode_footer, with the row groups' list as a RowGroups: the others are skipped, not decoded."""
    decoder = _Decoder(data)
    fields: list[Field] = []
    last = 0
    while (head := decoder.byte()) & 0x0F != _STOP:
        kind, delta = head & 0x0F, head >> 4
        fid = last + delta if delta else decoder.zigzag()
        if fid == _FMD_ROW_GROUPS and kind == _LIST:
            size, elem = _list_head(decoder)
            starts = []
            for _ in range(size):
                starts.append(decoder.pos)
                decoder.pos = _skip_struct(data, decoder.pos)
            value: Any = (elem, RowGroups(data, starts))
        else:
            value = kind == _TRUE if kind in (_TRUE, _FALSE) else decoder.value(kind)
        fields.append([fid, kind, value])
        last = fid
    return fields


def _list_head(decoder: _Decoder) -> tuple[int, int]:
    """(size, element type) of a list or set header."""
    head = decoder.byte()
    size, elem = head >> 4, head & 0x0F
    return (decoder.varint() if size == 15 else size), elem


# The skippers below run over every row group of a footer (5,760 in a day file of serving histograms,
# a million values), so they inline the varint and list loops that _Decoder would call per value.


def _skip_struct(data: bytes, pos: int) -> int:
    """Where the struct starting at `pos` ends (past its stop byte), reading only headers and lengths."""
    while True:
        head = data[pos]
        pos += 1
        kind = head & 0x0F
        if kind == _STOP:
            return pos
        if not head >> 4:  # a long-form field id (a zigzag varint) follows
            while data[pos] & 0x80:
                pos += 1
            pos += 1
        if _I16 <= kind <= _I64:  # most fields: skip the varint here, not in a call
            while data[pos] & 0x80:
                pos += 1
            pos += 1
        elif kind == _I8:
            pos += 1
        elif kind > _I64:  # booleans (_TRUE, _FALSE) live in the header
            pos = _skip_value(data, pos, kind)


def _skip_value(data: bytes, pos: int, kind: int) -> int:
    if kind <= _I8:  # inside a list a boolean takes a byte
        return pos + 1
    if kind <= _I64:
        while data[pos] & 0x80:
            pos += 1
        return pos + 1
    if kind == _DOUBLE:
        return pos + 8
    if kind == _BINARY:
        n = shift = 0
        while True:
            b = data[pos]
            pos += 1
            n |= (b & 0x7F) << shift
            if not b & 0x80:
                return pos + n
            shift += 7
    if kind in (_LIST, _SET):
        return _skip_list(data, pos)
    if kind == _STRUCT:
        return _skip_struct(data, pos)
    raise SpliceRefused(f"Thrift type {kind} in a Parquet footer")


def _skip_list(data: bytes, pos: int) -> int:
    head = data[pos]
    pos += 1
    size, elem = head >> 4, head & 0x0F
    if size == 15:
        size = shift = 0
        while True:
            b = data[pos]
            pos += 1
            size |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
    if elem <= _I8:
        return pos + size
    if _I16 <= elem <= _I64:
        for _ in range(size):
            while data[pos] & 0x80:
                pos += 1
            pos += 1
        return pos
    if elem == _STRUCT:
        for _ in range(size):
            pos = _skip_struct(data, pos)
        return pos
    for _ in range(size):
        pos = _skip_value(data, pos, elem)
    return pos


def encode_footer(fields: Sequence[Field]) -> bytes:
    """The inverse of decode_footer: decode_footer(x) re-encodes to x byte for byte."""
    enc = _Encoder()
    enc.struct(fields)
    return bytes(enc.out)


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
