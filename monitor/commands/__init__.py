"""One module per `monitor` subcommand, registered by monitor/cli.py; none imports Textual at import time."""
