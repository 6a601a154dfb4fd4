"""Where the page tests find Chromium: Debian's package (deploy/install_test_tools.sh installs it)."""

from __future__ import annotations

import shutil

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
NEEDS_CHROMIUM = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                    "(deploy/install_test_tools.sh installs it; make test runs that)")
