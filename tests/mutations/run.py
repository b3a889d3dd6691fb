"""Do the fault tests fail when their fault comes back? Apply each regression to a scratch copy and see.

Usage:
    .venv/bin/python tests/mutations/run.py              # every mutation
    .venv/bin/python tests/mutations/run.py NAME ...     # some of them (names in the table)
    .venv/bin/python tests/mutations/run.py --baseline   # also run each test on the unchanged copy

Each mutation copies the repository (tracked and untracked, not ignored files) to a temp directory,
replaces one snippet of source there, and runs the named test with that copy first on PYTHONPATH (the
tests' subprocesses inherit it). The mutation is caught when the test fails. Not part of the normal
test run: the two store fault tests take minutes. Exit status 0 when every mutation was caught.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Mutation:
    """One regression: in `path`, `old` (found exactly once) becomes `new`; `test` must then fail."""

    name: str
    path: str
    old: str
    new: str
    test: str
    why: str


MUTATIONS = (
    Mutation(
        "links-raw-minutes-uncounted",
        "monitor/report_links.py",
        "count(*) FILTER (WHERE {within} AND ({grew}) > 0) AS c",
        "0 AS c",
        "tests/post/test_link_faults_rollups.py::test_faults_in_minutes_no_rollup_holds_yet_are_found",
        "the newest minutes' growth samples are not counted: a fault no rollup holds yet is never read",
    ),
    Mutation(
        "links-hours-without-bucket-dropped",
        "monitor/report_links.py",
        "NOT IN (SELECT gpu, link, h FROM ({quiet}))",
        "IN (SELECT gpu, link, h FROM ({beside}) WHERE b OR pb OR nb)",
        "tests/post/test_link_faults_rollups.py::test_a_bundle_whose_first_hour_was_cut_reports_its_faults",
        "the report reads only minutes of hours a 1 h bucket calls busy: a bundle's cut first hour is lost",
    ),
    Mutation(
        "hangup-waits-for-the-app",
        "monitor/tui/hangup.py",
        "        self._app.exit()\n",
        "        self._app.exit()\n        self._returned.wait()\n",
        "tests/tui/test_hangup.py::test_a_wedged_app_still_ends_and_its_teardown_runs",
        "a lost terminal only asks the app to exit: an app wedged on Textual's dead output thread stays",
    ),
    Mutation(
        "hangup-no-terminal-check",
        "monitor/tui/hangup.py",
        "            if terminal_gone(self._fds):\n",
        "            if False:\n",
        "tests/tui/test_hangup.py::test_a_wedged_app_still_ends_and_its_teardown_runs",
        "a pty that hangs up without SIGHUP goes unnoticed while the event loop is wedged",
    ),
    Mutation(
        "manifest-in-place",
        "storage/layout.py",
        "    write_bytes(root / MANIFEST, manifest.to_json())\n",
        "    with open(root / MANIFEST, 'wb') as fh:\n"
        "        fh.write(manifest.to_json())\n"
        "        fh.flush()\n"
        "        os.fsync(fh.fileno())\n",
        "tests/storage/test_faults.py::test_kill_9_at_random_moments_loses_at_most_one_flush_interval",
        "the manifest is written in place instead of temp-and-rename",
    ),
    Mutation(
        "no-grace-period",
        "storage/layout.py",
        "            after = time.time() + grace_s\n",
        "            after = time.time()\n",
        "tests/storage/test_faults.py::"
        "test_reader_loop_sees_no_error_and_no_wrong_count_while_segments_seal_and_compact",
        "superseded files are deleted at the next purge, with no grace period",
    ),
    Mutation(
        "query-any-statement",
        "storage/sandbox.py",
        "    kind = _single_kind(sql)\n",
        "    return sql\n    kind = _single_kind(sql)\n",
        "tests/cli/test_query_readonly.py",
        "monitor query runs any statement (COPY, ATTACH, SET...)",
    ),
    Mutation(
        "query-external-access",
        "storage/sandbox.py",
        '            "SET enable_external_access = false",',
        "",
        "tests/cli/test_query_readonly.py",
        "DuckDB may open any file",
    ),
    Mutation(
        "spill-dir-left-behind",
        "storage/sandbox.py",
        "weakref.finalize(self, shutil.rmtree, self._spill, ignore_errors=True)",
        "lambda: shutil.rmtree(self._spill, ignore_errors=True)",
        "tests/storage/test_spill_dir.py",
        "a connection dropped without close() leaves its spill directory in /tmp",
    ),
    Mutation(
        "link-minutes-bound-by-inc",
        "monitor/report_links.py",
        """inc = f'coalesce("{GREW}", {inc})' if grew else inc""",
        "inc = inc",
        "tests/post/test_link_faults_rollups.py",
        "the report's link-fault narrowing ignores errors_grew (jumps of 50 in one sample read raw)",
    ),
    Mutation(
        "errors-grew-counts-every-sample",
        "storage/rollups.py",
        "{steps} > 0)::INTEGER",
        "{steps} >= 0)::INTEGER",
        "tests/post/test_link_faults_rollups.py",
        "errors_grew counts samples whose error counters did not grow",
    ),
    Mutation(
        "old-rollup-parts-cast",
        "storage/compactor.py",
        "rolled = [conform(pq.read_table(self.root / f.path), rest.schema) for f in parts]",
        "rolled = [pq.read_table(self.root / f.path).cast(rest.schema) for f in parts]",
        "tests/post/test_link_faults_rollups.py",
        "an hour whose rollup parts predate a rollup column cannot close",
    ),
    Mutation(
        "footer-skip-short-list-size-only",
        "monitor/thrift_compact.py",
        "    if size == 15:\n        size, pos = _varint_at(data, pos)\n",
        "    if False:\n        size, pos = _varint_at(data, pos)\n",
        "tests/post/test_export_window.py::test_the_row_group_skipper_steps_over_every_thrift_compact_type",
        "the footer's row-group skipper reads a list of 15 or more elements as 15",
    ),
    Mutation(
        "footer-skip-long-field-id",
        "monitor/thrift_compact.py",
        "        if not head >> 4:  # a long-form field id (a zigzag varint) follows",
        "        if False:  # a long-form field id (a zigzag varint) follows",
        "tests/post/test_export_window.py",
        "the footer's row-group skipper misreads a long-form field id",
    ),
    Mutation(
        "edge-band-ignores-whole-groups",
        "monitor/export_cut.py",
        "    others = [g for g, (a, b) in enumerate(plan.bounds) if g not in groups and a <= hi and b >= lo]",
        "    others: list[int] = []",
        "tests/post/test_export_window.py",
        "an edge band's ts filter also takes a row group of its time that was copied whole",
    ),
    Mutation(
        "edge-band-filter-open",
        "monitor/export_cut.py",
        'f"WHERE ts >= {ts_literal(span[0])} AND',
        'f"WHERE ts > {ts_literal(span[0])} AND',
        "tests/post/test_export_window.py",
        "the DuckDB edge cut drops the window's first sample",
    ),
    Mutation(
        "edge-band-old-columns",
        "monitor/export_cut.py",
        "        yield conform(rows, table_schema(plan.entry.table))",
        "        yield rows.cast(table_schema(plan.entry.table))",
        "tests/post/test_link_faults_rollups.py",
        "an export of a store written before errors_grew fails on its rollup files' edges",
    ),
    Mutation(
        "report-latency-first-bucket-dropped",
        "monitor/report.py",
        'buckets.get(r["le"], 0.0) + r["increase"]',
        'buckets.get(r["le"], 0.0) + (r["increase"] if r["le"] > 0.01 else 0)',
        "tests/post/test_report.py::test_quantiles_match_the_raw_rows",
        "the report's latency histogram loses its lowest bucket",
    ),
    Mutation(
        "views-not-built-for-users",
        "storage/reader.py",
        "        self._ensure_views()  # SHOW TABLES",
        "        pass  # SHOW TABLES",
        "tests/storage/test_reader.py",
        "SHOW TABLES in `monitor query` lists no table (views are made only when a statement names one)",
    ),
    Mutation(
        "views-not-built-when-named",
        "storage/reader.py",
        "            self._ensure_views()\n            return self.con.sql(query, params=params or None)",
        "            raise",
        "tests/storage/test_reader.py",
        "a statement naming a table fails: the views are never made",
    ),
    Mutation(
        "query-unlocked",
        "storage/sandbox.py",
        '            "SET lock_configuration = true",',
        "",
        "tests/storage/test_reader.py::test_the_readers_connection_opens_only_the_store_and_stays_locked",
        "the configuration is not locked",
    ),
    Mutation(
        "export-force-anything",
        "monitor/export.py",
        "replaceable=check_replaceable",
        "replaceable=None",
        "tests/post/test_export_force.py::test_force_refuses_anything_but_a_bundle_and_changes_nothing",
        "--force replaces any directory",
    ),
    Mutation(
        "export-dot",
        "monitor/bundle.py",
        'if out.name in ("", ".", "..") or Path.cwd().resolve().is_relative_to(where):',
        "if False:",
        "tests/post/test_export_force.py::"
        "test_force_on_the_current_directory_is_refused_even_when_it_is_a_bundle",
        "--force accepts the current directory",
    ),
    Mutation(
        "export-modes-of-umask-only",
        "monitor/export.py",
        "like=store,",
        "like=None,",
        "tests/post/test_export_force.py::test_bundle_modes_follow_the_umask_and_never_exceed_the_stores",
        "bundle modes ignore the store's own modes",
    ),
    Mutation(
        "lock-fd-leak",
        "storage/lock.py",
        "            self.release()\n            raise StoreError",
        "            raise StoreError",
        "tests/cli/test_startup_failures.py::test_a_full_disk_leaves_no_descriptor_and_no_lock_open",
        "a lock that cannot write its holder note keeps its descriptor (and the flock) open",
    ),
    Mutation(
        "sources-leak-on-failed-recording",
        "monitor/live.py",
        "            for source in sources:\n                source.close()\n",
        "",
        "tests/cli/test_startup_failures.py::test_full_disk_at_start_is_one_line",
        "a recording that cannot start leaves the scrape's HTTP client open ('Unclosed scrape client')",
    ),
    Mutation(
        "recording-stop-not-an-alert",
        "monitor/view/alerts_view.py",
        "elif ev.kind == EventKind.RECORDING_STOPPED:",
        "elif ev.kind == 'never':",
        "tests/cli/test_recording_alert.py",
        "a stopped recording is only an event line, not on the alert bar",
    ),
    Mutation(
        "close-leaves-polls-waiting",
        "collectors/scrape_http.py",
        "    fetching.add_done_callback(lambda _: landed.put([]))\n",
        "",
        "tests/net/test_close_ends_polls.py",
        "a closed scrape source's polls wait out their give-up time: the demo outlives its terminal",
    ),
    Mutation(
        "fleet-no-start-grace",
        "monitor/view/fleet_row.py",
        "        if self.done > self.rounds:\n",
        "        if True:\n",
        "tests/fleet/test_start_grace.py",
        "trays the backend has not scraped yet draw a rack red at start",
    ),
    Mutation(
        "abandoned-build-left",
        "storage/atomic.py",
        "    remove_abandoned(final)  # first",
        "    pass  # first",
        "tests/storage/test_abandoned_builds.py",
        "an export killed with SIGKILL leaves its temp directory for good",
    ),
    Mutation(
        "abandoned-build-deletes-old",
        "storage/atomic.py",
        '            _put_back_replaced(entry / "old", final)\n',
        "",
        "tests/storage/test_abandoned_builds.py",
        "cleaning a killed --force build deletes the bundle it had moved aside",
    ),
    Mutation(
        "query-no-timeout",
        "monitor/commands/query.py",
        "    stop.start()\n",
        "",
        "tests/cli/test_query_limits.py::test_a_runaway_query_stops_at_its_timeout_with_one_line",
        "monitor query runs as long as the query does",
    ),
    Mutation(
        "open-rollup-unsealed-minute",
        "storage/compactor.py",
        "    return min(sealed + 1, hour + HOUR_MS) // step_ms * step_ms\n",
        "    return -(-min(sealed + 1, hour + HOUR_MS) // step_ms) * step_ms\n",
        "tests/storage/test_open_hour_rollups.py",
        "the open hour's rollup takes the minute that is still being sealed, with only part of its rows",
    ),
    Mutation(
        "open-rollup-no-lag-roll",
        "storage/compactor.py",
        "        return hi - lo >= self.roll_lag_ms and any(",
        "        return False and any(",
        "tests/storage/test_open_hour_rollups.py::test_sealed_minutes_roll_between_merges_once_they_lag",
        "the open hour's sealed minutes wait for the next merge of segments (up to 5 minutes raw at the end)",
    ),
    Mutation(
        "open-rollup-fold-drops",
        "storage/compactor.py",
        "            rolled = pa.concat_tables([*kept, conform(rolled, schema)])\n",
        "            rolled = pa.concat_tables([conform(rolled, schema)])\n",
        "tests/storage/test_open_hour_rollups.py::test_the_open_hour_has_1m_rollups_of_its_sealed_minutes_each_once",
        "a roll replaces the open hour's rollup part with its new minutes only: the earlier ones are lost",
    ),
    Mutation(
        "open-rollup-no-fold",
        "storage/compactor.py",
        "        if parts:\n            import pyarrow.parquet as pq",
        "        parts = []\n        if parts:\n            import pyarrow.parquet as pq",
        "tests/storage/test_open_hour_rollups.py::test_the_open_hour_has_1m_rollups_of_its_sealed_minutes_each_once",
        "each roll writes a rollup part of its own: an hour of them, a file each for 'the last hour' to open",
    ),
    Mutation(
        "open-rollup-parts-kept",
        "storage/compactor.py",
        "for f in self._open_parts(rollup_name(table, step), hour)\n",
        "for f in []\n",
        "tests/storage/test_open_hour_rollups.py",
        "closing an hour leaves its rollup parts beside the hour's rollups: every minute twice",
    ),
    Mutation(
        "open-rollup-rolled-again",
        "storage/rollup_read.py",
        "    rolled = counter_rates.rolled_bounds(reader.manifest, table)[step]\n",
        "    rolled = counter_rates.rolled_until(reader.manifest, table)\n",
        "tests/storage/test_open_hour_rollups.py",
        "StoreReader.rollup rolls the open hour from raw rows over the minutes its parts already hold",
    ),
    Mutation(
        "hour-rollup-parts-and-all",
        "storage/compactor.py",
        "between=(open_rolled_until(parts, hour), hour + HOUR_MS)",
        "between=(hour, hour + HOUR_MS)",
        "tests/storage/test_open_hour_rollups.py::test_closing_the_hour_replaces_its_rollup_parts",
        "closing an hour rolls all its minutes again beside its parts' buckets: those minutes twice",
    ),
    Mutation(
        "hour-rollup-parts-lost",
        "storage/compactor.py",
        "        return pa.concat_tables([*rolled, rest])\n",
        "        return rest\n",
        "tests/storage/test_open_hour_rollups.py::test_closing_the_hour_replaces_its_rollup_parts",
        "closing an hour keeps only the minutes its parts lacked: the rest of its 1 min buckets are gone",
    ),
    Mutation(
        "reader-imports-duckdb",
        "storage/reader.py",
        "from typing import TYPE_CHECKING, Any\n",
        "from typing import TYPE_CHECKING, Any\n\nimport duckdb  # noqa: F401\n",
        "tests/storage/test_lazy_duckdb.py",
        "opening a store loads DuckDB (25 MiB resident) though the question never needs SQL",
    ),
    Mutation(
        "unspliceable-whole-groups-dropped",
        "monitor/export_cut.py",
        "            copied = cut_edges(source_root, root, plan, since_ms, until_ms, plan.whole, "
        'prefix="cut")\n',
        "            copied = None\n",
        "tests/post/test_long_store.py::test_a_file_that_cannot_be_spliced_is_re_encoded_with_exactly_its_rows",
        "a file the splice refuses loses its row groups wholly inside the window",
    ),
    Mutation(
        "series-ids-unranked",
        "storage/pieces.py",
        "        index = pc.fill_null(pc.take(rank, encoded.indices), _int(values - 1))\n",
        "        index = pc.fill_null(encoded.indices.cast(pa.int64()), _int(values - 1))\n",
        "tests/storage/test_series_ids.py",
        "series ids in first-seen order: counter increases come back in no stable order",
    ),
    Mutation(
        "cli-loads-the-poller",
        "monitor/cli.py",
        "from monitor.terminal import COLOR_HELP, MAX_FPS_HELP, RECORD_HELP, apply_terminal_options\n",
        "from monitor.live import COLOR_HELP, MAX_FPS_HELP, RECORD_HELP, apply_terminal_options\n",
        "tests/cli/test_agent_imports.py::test_the_command_line_loads_no_command_s_work",
        "every command, `monitor agent` among them, loads the live TUI's poller and pyarrow.compute",
    ),
    Mutation(
        "sim-package-eager",
        "collectors/sim/__init__.py",
        "    from collectors.sim.rack import SimRack\n",
        "    pass\nfrom collectors.sim.rack import SimRack\n\nif TYPE_CHECKING:\n",
        "tests/cli/test_agent_imports.py::test_the_command_line_loads_no_command_s_work",
        "naming the scenarios for --help runs the simulated rack's physics (and imports pynvml)",
    ),
    Mutation(
        "agent-polls-arrow",
        "collectors/agent_server.py",
        "self._counters.apply(self.collector.poll_plain(round(now * 1000)))",
        "self._counters.apply(PlainFrame.from_frame(self.collector.poll(round(now * 1000))))",
        "tests/cli/test_agent_imports.py::test_agent_serves_a_scrape_without_importing_the_tui_or_the_store",
        "the agent polls Arrow frames and loads pyarrow (27 MiB resident) for answers it renders from lists",
    ),
    Mutation(
        "agent-http-reads-bodies",
        "collectors/agent_http.py",
        '        if b"transfer-encoding" in headers or headers.get(b"content-length", b"0") != b"0":\n',
        "        if False:\n",
        "tests/net/test_agent_http.py::test_bodies_oversize_heads_and_garbage_are_refused_and_closed",
        "the agent takes requests with bodies (a scrape sends none): a client can make it buffer them",
    ),
    Mutation(
        "agent-http-no-field-limit",
        "collectors/agent_http.py",
        "        if any(len(name) + len(value) + 2 > limits.max_field_size",
        "        if False and any(len(name) + len(value) + 2 > limits.max_field_size",
        "tests/net/test_server_limits.py::test_an_oversize_header_or_a_body_is_refused_and_the_connection_closed",
        "a 6,000-byte header field is answered, past the agent's 4 KiB limit",
    ),
    Mutation(
        "agent-http-closes-every-connection",
        "collectors/agent_http.py",
        "        if self.h11.our_state is h11.MUST_CLOSE:\n",
        "        if True:\n",
        "tests/net/test_agent_http.py::test_text_page_kept_alive_and_a_pipelined_arrow_answer",
        "every answer closes its connection: each scrape pays a new TCP connection, pipelining is lost",
    ),
    Mutation(
        "tray-stream-links-in-nvml-order",
        "collectors/mappings/tray_stream.py",
        "    wanted = [i for i in sorted(range(len(keys)), key=keys.__getitem__) if keys[i][0] in racks]\n",
        "    wanted = [i for i in range(len(keys)) if keys[i][0] in racks]\n",
        "tests/scrape/test_tray_stream.py::test_the_agent_s_stream_holds_what_a_pyarrow_writer_would",
        "the stream's links go in NVML's order, not the (GPU, link) order its reader's fast path takes",
    ),
    Mutation(
        "plain-frame-keeps-sentinels",
        "storage/columns.py",
        "    return all(issubclass(kind, int) for kind in kinds) and",
        "    return True or all(issubclass(kind, int) for kind in kinds) and",
        "tests/collectors/test_nvml_fields.py::test_a_plain_frame_nulls_what_its_column_type_cannot_hold",
        "a driver's 0xFFFFFFFF reaches the agent's page as a reading (and breaks the Arrow frame)",
    ),
    Mutation(
        "chain-trusts-interleaved-runs",
        "storage/pieces.py",
        "    if disjoint and pc.any(pc.less_equal(t0, pt)).as_py():\n",
        "    if False:\n",
        "tests/storage/test_chain_runs.py::test_runs_that_interleave_in_time_are_not_trusted",
        "runs condensed from rows in no useful order are chained even where one hides another's samples",
    ),
    Mutation(
        "runs-ignore-time-order",
        "storage/pieces.py",
        "pc.greater(t0.slice(1), t1.slice(0, n - 1))])\n",
        "pc.not_equal(t0.slice(1), pa.scalar(-1, pa.int64()))])\n",
        "tests/storage/test_chain_runs.py::test_any_order_chains_to_the_rule_per_series",
        "a run goes on through a row earlier than the one before it",
    ),
    Mutation(
        "runs-cross-steps",
        "storage/pieces.py",
        "        same = pc.and_(same, _same_as_previous(pa.chunked_array([steps])))\n",
        "        pass\n",
        "tests/storage/test_chain_runs.py::test_any_order_chains_to_the_rule_per_series",
        "a run of a stepped chain goes on into the next step, whose pairs it then counts in its own",
    ),
    Mutation(
        "condensed-trusts-overlap",
        "storage/pieces.py",
        "    if joined.num_rows == (pc.sum(pc.invert(same)).as_py() or 0):\n",
        "    if True:\n",
        "tests/storage/test_chain_runs.py::test_condensed_pieces_chain_to_the_rule",
        "a span's pieces that overlap in time are condensed as if they followed each other",
    ),
    Mutation(
        "screen-types-the-app",
        "monitor/tui/screens/base.py",
        "    from monitor.tui.rack_ui import RackUi\n",
        "    from monitor.tui.app import RackApp as RackUi\n",
        "tests/test_import_graph.py::test_no_module_imports_itself_back",
        "a screen types its app by importing it (under TYPE_CHECKING), which imports the screen: a circle",
    ),
    Mutation(
        "storage-imports-the-sim",
        "storage/reader.py",
        "from storage import counter_rates\n",
        "from storage import counter_rates\n\nif False:\n    from collectors.sim import rack  # noqa: F401\n",
        "tests/test_import_graph.py::test_the_layers_import_one_way",
        "storage reaches up into collectors",
    ),
    Mutation(
        "series-buckets-unchecked",
        "storage/counter_rates.py",
        '            also = f", epoch_ms(ts) AS bucket, {usable} AS usable"\n',
        '            also = ", epoch_ms(ts) AS bucket, true AS usable"\n',
        "tests/storage/test_rate_vs_raw_loop.py::test_a_window_over_raw_edges_buckets_and_segments",
        "a series-filtered rate takes rollup buckets whose counter was NULL at an edge (no `_inc`)",
    ),
    Mutation(
        "mappings-package-eager",
        "collectors/mappings/__init__.py",
        "__getattr__ = lazy_attributes(__name__, _HOMES)\n",
        "from collectors.mappings.serving import ENGINES  # noqa: E402, F401\n"
        "__getattr__ = lazy_attributes(__name__, _HOMES)\n",
        "tests/cli/test_agent_imports.py::test_agent_serves_a_scrape_without_importing_the_tui_or_the_store",
        "the agent holds the serving engines' mappings and the page parser it never uses",
    ),
    Mutation(
        "in-order-ignores-ties",
        "storage/row_order.py",
        "            descending = pc.and_(tied, descending)\n",
        "            pass\n",
        "tests/storage/test_bands.py::test_in_order_agrees_with_pythons_comparison_of_row_tuples",
        "a later key's descent counts even where an earlier key already ordered the rows",
    ),
    Mutation(
        "in-order-checks-only-the-band",
        "storage/row_order.py",
        "        if not pc.any(tied).as_py():\n            return True\n",
        "        return True\n",
        "tests/storage/test_bands.py::test_banded_chunks_give_each_band_its_rows_sorted_by_keys_then_time",
        "rows in band order are taken as sorted without comparing gpu and ts: an export cut is left unsorted",
    ),
    Mutation(
        "gpus-endpoints-unfiltered",
        "monitor/export.py",
        'f"SELECT DISTINCT endpoint FROM {serving} WHERE {on_gpus} ORDER BY endpoint"',
        'f"SELECT DISTINCT endpoint FROM {serving} ORDER BY endpoint"',
        "tests/post/test_export.py::test_gpu_filter_keeps_the_histograms_of_exactly_those_gpus_endpoints",
        "export --gpus keeps every endpoint's histograms, not only those on the chosen GPUs",
    ),
    Mutation(
        "compacted-band-split-into-groups",
        "storage/segments.py",
        "    if banded:\n        return max(rows, 1)\n",
        "",
        "tests/storage/test_bands.py::test_a_compacted_chunk_is_one_row_group_and_a_segment_is_split_evenly",
        "an hour or day file's band written as several row groups: 8x the footer every reader parses",
    ),
    Mutation(
        "rollup-groups-wholly-inside",
        "storage/rollup_files.py",
        "if lo <= until_ms and hi >= since_ms)",
        "if lo >= since_ms and hi <= until_ms)",
        "tests/storage/test_rollup_cache.py::test_a_window_inside_a_long_file_decodes_only_the_row_groups_it_meets",
        "a rollup file's row groups that straddle the window's edge are skipped: buckets at its edges lost",
    ),
    Mutation(
        "in-order-trusts-nulls",
        "storage/row_order.py",
        "        if values.null_count:\n            return False\n",
        "",
        "tests/storage/test_bands.py::test_in_order_agrees_with_pythons_comparison_of_row_tuples",
        "a column with nulls is taken as ordered (null comparisons skipped): its rows are written unsorted",
    ),
    Mutation(
        "rollup-progress-bar",
        "storage/rollups.py",
        '        con.execute("SET enable_progress_bar = false")\n',
        "",
        "tests/storage/test_reader.py::test_a_rollup_draws_no_progress_bar_into_the_recorders_output",
        "a slow rollup draws DuckDB's progress bar into `monitor collect`'s stdout and the journal",
    ),
    Mutation(
        "endpoint-span-bucket-start",
        "monitor/report.py",
        'else (f"{ts} + first_ms", f"{ts} + last_ms")',
        "else (ts, ts)",
        "tests/post/test_report_fast_path.py::test_endpoint_spans_from_rollups_equal_raw_rows",
        "a rollup bucket's rows taken to span its start only: endpoints' first and last rows wrong",
    ),
    Mutation(
        "endpoint-span-null-times-trusted",
        "monitor/report.py",
        '        known = not any(r["unknown"] for r in rows)\n',
        "        known = True\n",
        "tests/post/test_report_fast_path.py::test_endpoint_spans_read_raw_where_rollups_predate_first_ms",
        "rollup files older than first_ms give NULL times: endpoints' spans from the buckets that have them",
    ),
    Mutation(
        "endpoint-span-missing-columns",
        "monitor/report.py",
        "    except counter_rates.missing_column_errors():",
        "    except ZeroDivisionError:",
        "tests/post/test_report_fast_path.py::test_endpoint_spans_read_raw_where_rollups_predate_first_ms",
        "a span whose rollup files all predate first_ms: the report fails instead of reading raw rows",
    ),
    Mutation(
        "band-runs-unchecked",
        "storage/band_runs.py",
        "bad = pa.array(sorted({b for rows in tables for b in _broken_bands(rows)}), pa.int64())",
        "bad = pa.array([], pa.int64())",
        "tests/storage/test_band_runs.py::test_a_shuffled_file_leaves_its_bands_and_only_those",
        "rows out of band order trusted as runs: pieces overlap and the increase is wrong",
    ),
    Mutation(
        "sliding-rate-first-step",
        "storage/increase.py",
        "            self._sum -= first[1]",
        "            pass",
        "tests/storage/test_increase_agreement.py::test_a_sliding_rate_equals_rate_over_its_window_after_every_sample",
        "the window's first sample still counted from one that left it: a lifetime total read as new work",
    ),
    Mutation(
        "link-window-clean-skips-expiry",
        "collectors/alerts.py",
        "if not self.growth and list(values) == self.last:",
        "if list(values) == self.last:",
        "tests/tui/test_alerts.py::test_link_errors_clear_once_their_growth_leaves_the_window",
        "a link whose counters stopped moving keeps its old errors in the window: the alert never clears",
    ),
    Mutation(
        "aiohttp-at-import",
        "collectors/scrape_http.py",
        "if TYPE_CHECKING:\n    import aiohttp\n",
        "import aiohttp\n",
        "tests/net/test_lazy_aiohttp.py",
        "aiohttp loaded by every scrape: 24 MB more in the recorder and the live client",
    ),
)


def copy_repo(into: Path) -> None:
    """The working tree's files (tracked, and untracked but not ignored) under `into`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for rel in (os.fsdecode(r) for r in listed if r):
        source = ROOT / rel
        if source.is_file():
            (into / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / rel)


def run_test(copy: Path, test: str) -> tuple[str, float]:
    """Run one pytest node id in `copy`; returns ('failed' | 'passed' | 'error rc=N', seconds)."""
    env = {**os.environ, "PYTHONPATH": str(copy)}
    began = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-n0", "-x", "-q", "-p", "no:cacheprovider", test],
        cwd=copy,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    seconds = time.monotonic() - began
    outcome = {0: "passed", 1: "failed"}.get(done.returncode, f"error rc={done.returncode}")
    if outcome.startswith("error"):
        sys.stderr.write(done.stdout[-3000:] + done.stderr[-3000:])
    return outcome, seconds


def apply(copy: Path, mutation: Mutation) -> None:
    path = copy / mutation.path
    text = path.read_text()
    found = text.count(mutation.old)
    if found != 1:
        raise SystemExit(
            f"{mutation.name}: the snippet occurs {found} times in {mutation.path}; update MUTATIONS"
        )
    path.write_text(text.replace(mutation.old, mutation.new))


def main(argv: list[str]) -> int:
    """Run the mutations named in argv (all by default) and print a table; 0 if every one was caught."""
    baseline = "--baseline" in argv
    names = [a for a in argv if not a.startswith("--")]
    unknown = set(names) - {m.name for m in MUTATIONS}
    if unknown:
        raise SystemExit(
            f"unknown mutation {', '.join(sorted(unknown))}; known: {', '.join(m.name for m in MUTATIONS)}"
        )
    chosen = [m for m in MUTATIONS if not names or m.name in names]
    rows = []
    for mutation in chosen:
        with tempfile.TemporaryDirectory(prefix="rack-monitor-mutation-") as scratch:
            copy = Path(scratch)
            copy_repo(copy)
            clean = run_test(copy, mutation.test)[0] if baseline else "-"
            apply(copy, mutation)
            outcome, seconds = run_test(copy, mutation.test)
        caught = outcome == "failed" and clean in ("passed", "-")
        rows.append((mutation.name, clean, outcome, f"{seconds:.0f} s", "caught" if caught else "NOT CAUGHT"))
        print(f"{mutation.name}: {mutation.why} -> test {outcome}", file=sys.stderr, flush=True)
    header = ("mutation", "unmutated", "mutated", "time", "verdict")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    for row in [header, *rows]:
        print("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0 if all(r[-1] == "caught" for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
