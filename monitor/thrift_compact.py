"""A small, lossless Thrift compact-protocol codec for Parquet footers (apache/thrift
doc/specs/thrift-compact-protocol.md; Parquet's FileMetaData is a Thrift struct).

It decodes every field it finds as [field id, compact type, value] and re-encodes it unchanged, so
fields it does not know about survive a round trip. A footer's row groups can be left encoded and
decoded one at a time (decode_footer_lazily): a day file's footer has thousands of them, and
monitor.parquet_splice keeps a few.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

_STOP, _TRUE, _FALSE, _I8, _I16, _I32, _I64, _DOUBLE, _BINARY, _LIST, _SET, _MAP, _STRUCT = range(13)
_FMD_ROW_GROUPS = 4
"""FileMetaData.row_groups (parquet.thrift), the list decode_footer_lazily leaves encoded."""


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
        n, pos = _varint_at(data, pos)
        return pos + n
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
        size, pos = _varint_at(data, pos)
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


def _varint_at(data: bytes, pos: int) -> tuple[int, int]:
    """(the unsigned varint at `pos`, where it ends)."""
    n = shift = 0
    while True:
        b = data[pos]
        pos += 1
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            return n, pos
        shift += 7


def encode_footer(fields: Sequence[Field]) -> bytes:
    """The inverse of decode_footer: decode_footer(x) re-encodes to x byte for byte."""
    enc = _Encoder()
    enc.struct(fields)
    return bytes(enc.out)
