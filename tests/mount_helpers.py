"""Real file-system conditions for tests, in a private mount namespace (``unshare --mount``):
a read-only volume (a read-only bind mount) or a small disk that fills up (a sized tmpfs).
Nothing is mounted outside the command's own namespace, and everything vanishes with it.

As root the namespace needs no more; otherwise ``--map-root-user`` asks for a user namespace.
Where neither is allowed (a locked-down container), ``mount_ns_prefix`` says why, and the tests that
need it skip with that reason.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess


@functools.cache
def mount_ns_prefix() -> tuple[list[str] | None, str]:
    """(command prefix that runs ``sh -c SCRIPT`` in a private mount namespace, or None; why not)."""
    unshare = shutil.which("unshare")
    if unshare is None:
        return None, "unshare (util-linux) is not installed"
    base = [unshare, "--mount"] + ([] if os.geteuid() == 0 else ["--map-root-user"])
    probe = subprocess.run([*base, "sh", "-c", "mount -t tmpfs -o size=1m tmpfs /mnt 2>&1 || mount -t tmpfs -o "
                            "size=1m tmpfs /tmp"], capture_output=True, text=True)
    if probe.returncode != 0:
        return None, f"cannot mount in a private namespace here: {(probe.stderr or probe.stdout).strip()[:200]}"
    return base, ""


def in_mount_ns(script: str, *, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run a shell ``script`` in a private mount namespace (see ``mount_ns_prefix``)."""
    prefix, why = mount_ns_prefix()
    if prefix is None:
        raise RuntimeError(why)
    return subprocess.run([*prefix, "sh", "-ec", script], env=env, capture_output=True, text=True, timeout=timeout)
