"""One error tree for docqa, and what each branch means to a user.

- ``UserError``: something the user can fix (a bad name, file, setting, request or data set). The CLI
  prints one line and exits 2; the HTTP API answers 4xx with the message.
- ``Unavailable``: a model, server or resource that cannot be used now (not built, not installed, not
  answering). The CLI prints one line and exits 2; the HTTP API answers 503.
- Anything else is a bug in docqa: the CLI says "internal error" and exits 70 (``DOCQA_DEBUG=1`` shows
  the traceback); the HTTP API answers 500 with the request id and logs the traceback. A plain
  ``ValueError`` raised by library code is such a bug, not the user's mistake.

``UserError`` is a ``ValueError`` and ``Unavailable`` a ``RuntimeError``, so code that catches those
keeps working.
"""

from __future__ import annotations


class DocqaError(Exception):
    """Base of every error docqa raises on purpose."""


class UserError(DocqaError, ValueError):
    """Input, configuration or data the user can correct; the message says what and how."""


class Unavailable(DocqaError, RuntimeError):
    """A model, server or resource docqa needs cannot be used now; the message names it and the fix."""
