"""The rack-monitor store: Arrow schemas, Frames, the in-memory head and (later) Parquet segments.

This package depends on pyarrow and duckdb only; it never imports Textual or the collectors.
"""
