"""ecgdigit: turn images of paper ECGs into 12-lead signals."""
__version__ = "0.1.0"

from ecgdigit.errors import EcgdigitError  # noqa: E402,F401
