"""Errors a loader raises for one bad file; the batch reports them and goes on."""

from docqa.errors import UserError


class LoadError(UserError):
    """A file could not be turned into documents. ``reason`` is shown to the user as is."""

    def __init__(self, path: str, reason: str):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
