"""OpenMetrics pages read as the text format 0.0.4, so one parser and every mapping serve both.

We ask for text 0.0.4 (collectors.scrape.ACCEPT), but a server may answer OpenMetrics anyway
(`Content-Type: application/openmetrics-text`). Read as 0.0.4 such a page looks valid and comes out
wrong: a counter is declared as `x` with samples `x_total` and `x_created`, and prometheus_client
>= 0.23 writes sample names without the declared `:` (`# TYPE vllm:num_requests_running gauge`
over `vllm_num_requests_running 7.0`, client_python issue #1177), so every gauge and histogram
lands in an empty declared family beside an untyped one, and the mapping finds nothing.

`to_text_format` rewrites the page line for line (dropped lines become blank, so line numbers in
errors stay the page's own): each sample takes the spelling of the family it belongs to (matched with
`:` read as `_`), a counter family is declared under its sample name `x_total`, `info` families
under `x_info`, `_created` samples and `# UNIT` lines go, exemplars are cut off, timestamps in
seconds become milliseconds, types 0.0.4 lacks (`info`, `stateset`, `gaugehistogram`, `unknown`)
become gauge or untyped, and `# EOF` must close the page (else it was cut short).
What it cannot read (quoted UTF-8 metric names) raises ExpositionError: the endpoint is then DOWN
with that reason, never an OK row without its figures.
Format: OpenMetrics 1.0 (github.com/prometheus/OpenMetrics specification/OpenMetrics.md); what
prometheus_client writes: prometheus_client/openmetrics/exposition.py (0.26).
"""

from __future__ import annotations

from collectors.promtext_syntax import ExpositionError

CONTENT_TYPE = "application/openmetrics-text"
_EOF = "# EOF"
_TEXT_TYPES = {
    "counter": "counter",
    "gauge": "gauge",
    "histogram": "histogram",
    "summary": "summary",
    "info": "gauge",
    "stateset": "gauge",
    "gaugehistogram": "untyped",
    "unknown": "untyped",
}
"""OpenMetrics type -> the 0.0.4 type its samples are read as."""
_SAMPLES = {
    "counter": ("_total",),
    "histogram": ("_bucket", "_count", "_sum"),
    "gaugehistogram": ("_bucket", "_gcount", "_gsum"),
    "summary": ("", "_count", "_sum"),
    "info": ("_info",),
}
"""Sample name suffixes of each type (others: the family's own name)."""
_CREATED_TYPES = frozenset({"counter", "histogram", "summary"})


def is_openmetrics(body: bytes | str, content_type: str | None = None) -> bool:
    """Whether a page is OpenMetrics: by its Content-Type, else by its closing `# EOF` line."""
    if content_type and content_type.split(";", 1)[0].strip().lower() == CONTENT_TYPE:
        return True
    tail = body[-16:]
    if isinstance(tail, bytes):
        tail = tail.decode("utf-8", "replace")
    return tail.rstrip("\n").endswith("\n" + _EOF) or tail.strip() == _EOF


def _canonical(name: str) -> str:
    return name.replace(":", "_")


def _declared_name(name: str, kind: str) -> str:
    """The 0.0.4 family name of an OpenMetrics family (what its samples are called)."""
    if kind == "counter" and not name.endswith("_total"):
        return name + "_total"
    if kind == "info":
        return name + "_info"
    return name


def _spellings(lines: list[str]) -> dict[str, str | None]:
    """Canonical sample name -> the sample name to write (None: drop the sample), from the TYPE lines."""
    out: dict[str, str | None] = {}
    for line in lines:
        if not line.startswith("# TYPE "):
            continue
        parts = line.split()
        if len(parts) != 4:
            continue  # the parser names the fault on the rewritten line
        name, kind = parts[2], parts[3].lower()
        base = name[: -len("_total")] if kind == "counter" and name.endswith("_total") else name
        for suffix in _SAMPLES.get(kind, ("",)):
            written = _declared_name(name, kind) if kind in ("counter", "info") else base + suffix
            out[_canonical(base + suffix)] = written
        if kind in _CREATED_TYPES:
            out[_canonical(base + "_created")] = None
    return out


def _head_end(line: str, lineno: int) -> int:
    """The index just past a sample's `name{labels}` (quotes and escapes respected)."""
    brace = line.find("{")
    blank = line.find(" ")
    if brace < 0 or (0 <= blank < brace):
        return blank if blank >= 0 else len(line)
    if brace == 0:
        raise ExpositionError(lineno, "OpenMetrics quoted metric names are not supported")
    quoted = escaped = False
    for i in range(brace + 1, len(line)):
        ch = line[i]
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif ch == "}" and not quoted:
            return i + 1
    raise ExpositionError(lineno, "label set is not closed with '}'")


def _sample(line: str, lineno: int, spellings: dict[str, str | None]) -> str:
    """A sample line in 0.0.4 form ("" to drop it)."""
    end = _head_end(line, lineno)
    head, rest = line[:end], line[end:]
    brace = head.find("{")
    name = head if brace < 0 else head[:brace]
    labels = "" if brace < 0 else head[brace:]
    spelled = spellings.get(_canonical(name), name)
    if spelled is None:
        return ""
    fields = rest.split(" # ", 1)[0].split()  # an exemplar follows ` # `
    if len(fields) == 2:
        try:
            fields[1] = str(round(float(fields[1]) * 1000))
        except ValueError:
            raise ExpositionError(lineno, f"invalid timestamp {fields[1]!r} (want seconds)") from None
    return f"{spelled}{labels} {' '.join(fields)}"


def _declaration(line: str, kinds: dict[str, str]) -> str:
    """A HELP or TYPE line under the family's 0.0.4 name; UNIT and other comments go."""
    parts = line.split(" ", 3)
    if len(parts) < 3 or parts[1] not in ("HELP", "TYPE"):
        return ""
    keyword, name = parts[1], parts[2]
    kind = kinds.get(name, "")
    declared = _declared_name(name, kind)
    if keyword == "TYPE":
        return f"# TYPE {declared} {_TEXT_TYPES.get(kind, kind)}"
    return f"# HELP {declared} {parts[3] if len(parts) == 4 else ''}".rstrip()


def to_text_format(page: str | bytes) -> str:
    """An OpenMetrics page rewritten as text format 0.0.4, line for line (see the module doc).

    Raises:
        ExpositionError: the page does not end with `# EOF`, or holds what 0.0.4 cannot say.
    """
    if isinstance(page, bytes | bytearray):
        try:
            page = bytes(page).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ExpositionError(0, f"page is not UTF-8 (byte {exc.start})") from None
    lines = page.split("\n")
    while lines and not lines[-1]:
        lines.pop()
    if not lines or lines[-1] != _EOF:
        raise ExpositionError(len(lines), "OpenMetrics page without its closing '# EOF' (cut short)")
    kinds = {}
    for line in lines:
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) == 4:
                kinds[parts[2]] = parts[3].lower()
    spellings = _spellings(lines)
    out = []
    for lineno, line in enumerate(lines, 1):  # `# EOF` too: a blank line
        if line.startswith("#"):
            out.append(_declaration(line, kinds))
        elif line.strip():
            out.append(_sample(line, lineno, spellings))
        else:
            out.append("")
    return "\n".join(out) + "\n"
