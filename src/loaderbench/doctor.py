"""End the runs of a store that were left RUNNING by a process that died without a word.

    python -m loaderbench.doctor --tracking-uri URI               # mark them KILLED
    python -m loaderbench.doctor --tracking-uri URI --dry-run     # only list them
    python -m loaderbench.doctor --heartbeat-limit 1800           # seconds (default 600)

For a user, or a cron job, on any host: runs of this host are judged by their pid, every other
run by its heartbeat (:mod:`loaderbench.lost` says what each can see). Each lost run is ended
KILLED with ``loaderbench.killed_by=lost`` and the reason; a sweep's parent once none of its
runs is live. ``python -m loaderbench.report PARENT_ID`` then rebuilds the sweep's report
from what finished. Exit status: 0 (whether or not something was lost), 2 when the store
cannot be read.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

from loaderbench import lost, store
from loaderbench.tracking_uri import add_tracking_uri_option, redact


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m loaderbench.doctor",
        description="End KILLED the runs left RUNNING by a process that died (kill -9, the OOM "
        "killer, a dead node).",
    )
    add_tracking_uri_option(parser)
    parser.add_argument("--dry-run", action="store_true", help="list what it would change, only")
    parser.add_argument(
        "--heartbeat-limit",
        type=float,
        default=lost.HEARTBEAT_LIMIT_S,
        metavar="S",
        help="a run whose last heartbeat is older than S seconds is lost (default: %(default)g)",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if args.heartbeat_limit < 2 * 60:  # a beat comes every minute: a tighter limit misjudges
        parser.error("--heartbeat-limit must be at least 120 s (the heartbeat comes every 60 s)")

    try:
        uri = store.resolve_tracking_uri(args.tracking_uri, os.getcwd())
        store.check_reachable(uri)
        client = store.open_store(uri, must_exist=True)
        running = lost.running_runs(client)
    except (store.NotInStore, ValueError) as exc:  # ConfigError is a ValueError
        print(f"error: {exc}", file=sys.stderr)
        return 2
    found = lost.judge(
        running,
        now=time.time(),
        here=lost.Machine.here(),
        heartbeat_limit_s=args.heartbeat_limit,
    )
    verb = "would mark KILLED" if args.dry_run else "marked KILLED"
    for item in found:
        if not args.dry_run:
            lost.mark(client, item)
        print(f"{verb}: {item.label}: {item.reason}")
    live = len(running) - len(found)
    tail = " (dry run: nothing changed)" if args.dry_run else ""
    print(f"{len(found)} lost, {live} RUNNING run(s) live in {redact(uri, '***@')}{tail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
