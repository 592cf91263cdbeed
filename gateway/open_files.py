"""The open-file limit: every proxied stream holds two descriptors (the caller's connection and
the upstream's), so the limit caps concurrent streams at about half of it.

Many systems start a process with a soft limit of 1,024 under a much higher hard limit (systemd:
524,288), which would cap the gateway near 500 streams. At start the soft limit is raised to the
hard one, as the Go runtime does for every program; a hard limit too low for a busy gateway is
logged as a warning naming the fix.
"""

from __future__ import annotations

import resource

import structlog

log = structlog.get_logger("gateway")

#: Below this, the limit is logged as too low: about 4,000 concurrent streams.
ADVISED = 8192


def raise_to_hard_limit() -> int:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit; returns the limit now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # An unlimited hard limit (not on Linux, where fs.nr_open caps it) asks for a million.
    wanted = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass  # it stays as it was; the warning below says what that allows
    if soft < ADVISED:
        log.warning(
            "open_files_limit_low",
            limit=soft,
            streams=soft // 2,
            hint="raise the hard limit: LimitNOFILE= (systemd), --ulimit nofile= (docker), ulimit -Hn",
        )
    return soft
