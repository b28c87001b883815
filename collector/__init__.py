"""PLC tag collector: a bounded buffer and batch writer from a polling engine to Oracle."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("plc-tag-collector")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0"
