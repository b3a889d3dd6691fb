"""A scrape loads aiohttp only for the PromQL source's session: the recorder and the live client fetch with
ScrapeClient, and aiohttp is ~24 MB resident on import (issue 18's memory). Checked in a fresh
interpreter, where sys.modules says what was imported, over a real loopback server; then a session is
opened there and its errors still map to one clear state (the except clauses name aiohttp's classes
only once it is loaded)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

SCRIPT = textwrap.dedent(
    """
    import asyncio, json, socket, sys, threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import monitor.cli, monitor.commands.collect, collectors.scrape, collectors.poller  # what `collect` loads
    from collectors.scrape_http import fetch_page, open_client, open_session

    class Page(BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"vllm:num_requests_running 3\\n"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/metrics"
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{s.getsockname()[1]}/metrics"

    async def main():
        seen = {"imported": "aiohttp" in sys.modules}
        client = open_client(1)
        page = await fetch_page(client, url, timeout_s=5, max_bytes=1 << 20)
        refused = await fetch_page(client, closed, timeout_s=5, max_bytes=1 << 20)
        await client.close()
        seen |= {"page": page.text, "refused": refused.reason, "after": "aiohttp" in sys.modules}
        session = await open_session(1)
        try:
            by_session = await fetch_page(session, closed, timeout_s=5, max_bytes=1 << 20)
        finally:
            await session.close()
        seen |= {"session_refused": [by_session.state.name, by_session.reason]}
        return seen

    print(json.dumps(asyncio.run(main())))
    server.shutdown()
    """
)


def test_a_scrape_never_imports_aiohttp_and_a_session_still_maps_its_errors() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["imported"] is False and seen["after"] is False
    assert seen["page"] == "vllm:num_requests_running 3\n"
    assert seen["refused"] == "connection refused"
    assert seen["session_refused"] == ["DOWN", "connection refused"]
