"""rack-monitor: the command line, the Textual app and the post-mortem tools."""

__version__ = "0.1.0"
