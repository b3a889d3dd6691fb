"""One module per `monitor` subcommand; monitor/cli.py registers them. None of them imports Textual at import time."""
