"""The shape of a parsed page, for re-reading the next page of the same endpoint without a line loop.

An exporter prints the same lines every scrape, only the values change. ExpositionParser records
which lines of a page took value-independent paths: samples read by the cached-head fast path (and
lines skipped by the `want` filter), every other line as fixed text. The next page fits the shape
when it has as many lines, its fixed lines are equal, its other lines keep their text up to the last
blank, and every value token is one the fast path accepts; then it parses to the same families with
the new values, and `fill` builds them with C-level passes (map, itemgetter, zip) instead of the
per-line loop. A page that does not fit is parsed line by line as usual (and records a new shape).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import partial
from itertools import repeat
from operator import itemgetter
from typing import Any

from collectors.promtext_syntax import SPECIAL_VALUES, Family

_head = itemgetter(0)
_token = itemgetter(2)


def _picker(indices: Sequence[int]) -> Callable[[Sequence[Any]], tuple[Any, ...]]:
    """itemgetter that always returns a tuple (itemgetter(i) alone returns the bare item)."""
    if len(indices) > 1:
        return itemgetter(*indices)
    if indices:
        index = indices[0]
        return lambda seq: (seq[index],)
    return lambda seq: ()


class PageShape:
    """The lines of one parsed page, split into fixed text and value-carrying lines.

    Args:
        lines: the page split at `\\n`, as parsed.
        samples: (line index, family) of each sample read by the cached-head fast path, in order
            (all the page's samples: see `fits`).
        prefix_skipped: (line index, the prefixes that skipped it) of each line skipped by a filtered
            name's prefix (the rest of such a line is never read).
        name_skipped: line indexes skipped after their name was read (kept cautious: a next page
            with a `{` in such a value goes to the line loop).
        families: what the page parsed to.
        want: the filter it was parsed with (a shape only serves the same filter).
    """

    def __init__(
        self,
        lines: list[str],
        samples: list[tuple[int, Family]],
        prefix_skipped: list[tuple[int, tuple[str, ...]]],
        name_skipped: list[int],
        families: dict[str, Family],
        want: object,
    ) -> None:
        """Record the shape (see the class docstring)."""
        self.want = want
        self.count = len(lines)
        self.kept: dict[str, list[int]] = {}
        """Per family with repeated series: the positions of the samples kept (promtext.drop_duplicates)."""
        prefixed = [i for i, _ in prefix_skipped]
        fixed = sorted(set(range(len(lines))) - {i for i, _ in samples} - set(prefixed) - set(name_skipped))
        self._fixed = _picker(fixed)
        self._fixed_lines = self._fixed(lines)
        # Sample lines and name-skipped lines are checked up to their last blank (their value token
        # apart); a prefix-skipped line only for the prefixes that skipped it: the line loop, in the
        # same state at that line, skips whatever follows them unread.
        self._sample_lines = _picker([i for i, _ in samples])
        self._sample_heads = [line.rpartition(" ")[0] for line in self._sample_lines(lines)]
        self._named_lines = _picker(name_skipped)
        self._named_heads = [line.rpartition(" ")[0] for line in self._named_lines(lines)]
        self._prefixed_lines = _picker(prefixed)
        self._prefixes = [prefixes for _, prefixes in prefix_skipped]
        # Per family: its samples' (name, labels) and their places among the page's sample values.
        order = {id(family): n for n, family in enumerate(families.values())}
        places: list[list[int]] = [[] for _ in families]
        for k, (_, family) in enumerate(samples):
            places[order[id(family)]].append(k)
        self._families = []
        for family, mine in zip(families.values(), places, strict=True):
            kept = family.samples  # all of them fast-path samples (see fits)
            sample = type(kept[0]) if kept else None
            self._families.append((family, [s[0] for s in kept], [s[1] for s in kept], _picker(mine), sample))

    @staticmethod
    def fits(samples: list[tuple[int, Family]], families: dict[str, Family]) -> bool:
        """Whether a page can be recorded: every sample it holds came from the fast path."""
        return len(samples) == sum(len(family.samples) for family in families.values())

    def fill(self, lines: list[str]) -> dict[str, Family] | None:
        """The families of a page that fits the shape (new Family objects), or None if it does not."""
        if len(lines) != self.count or self._fixed(lines) != self._fixed_lines:
            return None
        if not all(map(str.startswith, self._prefixed_lines(lines), self._prefixes)):
            return None
        named = list(map(str.rpartition, self._named_lines(lines), repeat(" ")))
        if list(map(_head, named)) != self._named_heads or "{" in "".join(map(_token, named)):
            return None
        split = list(map(str.rpartition, self._sample_lines(lines), repeat(" ")))
        if list(map(_head, split)) != self._sample_heads:
            return None
        texts = list(map(_token, split))
        # The values must be what the line loop's fast path accepts (see ExpositionParser.parse):
        # printable ASCII without `_`, finite or an Inf/NaN spelled as Go's ParseFloat spells it.
        joined = "".join(texts)
        if "_" in joined or not joined.isascii() or not joined.isprintable():
            return None
        try:
            values = list(map(float, texts))
        except ValueError:
            return None
        total = sum(values)
        if total - total != 0.0 and not all(
            v - v == 0.0 or t.lower() in SPECIAL_VALUES for v, t in zip(values, texts, strict=True)
        ):
            return None  # 1e400, -nan: the line loop names the line
        families: dict[str, Family] = {}
        kept = self.kept
        for family, names, labels, mine, sample in self._families:
            samples = (
                list(map(partial(tuple.__new__, sample), zip(names, labels, mine(values), repeat(None))))
                if sample is not None
                else []
            )
            first = kept.get(family.name) if kept else None
            duplicates = 0
            if first is not None:
                duplicates = len(samples) - len(first)
                samples = [samples[i] for i in first]
            families[family.name] = type(family)(family.name, family.type, family.help, samples, duplicates)
        return families
