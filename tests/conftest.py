"""Settings every test shares."""

import os

# A service built from the environment in a test (or a `collector run` it starts) listens on a free
# port, never on the default 9108 that a running collector or another test run may hold. Tests that
# need to know the port set it themselves.
os.environ.setdefault("COLLECTOR_API__PORT", "0")
