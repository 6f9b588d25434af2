"""`kubefixtures gc | status | operator`: the sessions on a cluster, and reaping the leaked ones.

``gc`` makes the operator's decision once (``kubefixtures.leases.policy.decide``), for clusters
without the operator: from a laptop, or a CI cron job. ``status`` shows every session
namespace for whoever runs a shared cluster. ``operator`` runs the kopf operator; kopf is
imported only then.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from kubefixtures.cli.options import add_cluster_options
from kubefixtures.leases.options import (
    OPERATOR_DESCRIPTION,
    OPERATOR_HELP,
    add_grace_option,
    add_operator_arguments,
    add_selector_option,
)
from kubefixtures.leases.policy import (
    LeaseState,
    SessionNamespace,
    decide,
    format_time,
    lease_problem,
    lease_state,
)
from kubefixtures.naming import CI_JOB_LABEL, HOST_LABEL, USER_LABEL

if TYPE_CHECKING:
    from kubefixtures.kube.client import Cluster
    from kubefixtures.leases.existing_namespaces import ReapedSession

__all__ = ["register"]

GC_COMPONENT = "kubefixtures-gc"


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gc = commands.add_parser(
        "gc",
        help="delete leaked session namespaces once (what the operator does continuously)",
        description="Delete every namespace labelled app.kubernetes.io/managed-by=kubefixtures "
        "whose session lease expired more than --grace seconds ago (and whose keep-until has "
        "passed), or that has no lease and is older than --grace; then remove such dead "
        "sessions from the owners of cluster-scoped objects labelled likewise, deleting those "
        "left without owners; then reap dead sessions in existing namespaces "
        "(--kubefixtures-namespace): their objects and lease, never the namespace. Nothing "
        "else is touched.",
    )
    gc.add_argument(
        "--dry-run", action="store_true", help="say what would be deleted, delete nothing"
    )
    gc.add_argument(
        "--namespace",
        metavar="NAME",
        help="only reap dead sessions in this existing namespace (for credentials limited "
        "to it: no namespace nor cluster-scoped object is looked at)",
    )
    add_grace_option(gc)
    add_selector_option(gc)
    add_cluster_options(gc)
    gc.set_defaults(handler=run_gc)

    status = commands.add_parser(
        "status",
        help="list the kubefixtures sessions on the cluster",
        description="One line per namespace managed by kubefixtures, and per session in an "
        "existing namespace (--kubefixtures-namespace; marked '(existing namespace)', its age "
        "the session's): owner, host, age, lease state and keep-until.",
    )
    add_grace_option(status)
    add_selector_option(status)
    add_cluster_options(status)
    status.set_defaults(handler=run_status)

    operator = commands.add_parser("operator", help=OPERATOR_HELP, description=OPERATOR_DESCRIPTION)
    add_operator_arguments(operator)
    operator.set_defaults(handler=run_operator)


def _error(message: str) -> int:
    print(f"kubefixtures: error: {message}", file=sys.stderr)
    return 1


# --- gc ----------------------------------------------------------------------------------------


def run_gc(arguments: argparse.Namespace) -> int:
    from kubefixtures.kube.client import Cluster
    from kubefixtures.leases.cluster_scoped import reap_cluster_scoped
    from kubefixtures.leases.existing_namespaces import reap_existing
    from kubefixtures.leases.reaping import list_sessions, recheck_and_delete

    started = time.monotonic()
    cluster = Cluster.connect_to_read(arguments.kubeconfig, arguments.context)
    try:
        if arguments.namespace:
            return _reap_in(cluster, arguments, started)
        sessions = list_sessions(cluster, arguments.selector)
        # The API server's time (measured on its answers), never this machine's: a laptop
        # whose clock is ahead must not condemn everyone's live sessions.
        now = cluster.server_clock.wall()
        deleted = kept = 0
        for session in sessions:
            decision = decide(session, now, arguments.grace)
            if not decision.delete:
                kept += 1
                print(f"kept          {session.name}: {decision.reason}{_pool_note(session)}")
            elif arguments.dry_run:
                deleted += 1
                print(f"would delete  {session.name}: {decision.reason}")
            else:
                # Read again right before deleting: the list may be a few seconds old.
                outcome = recheck_and_delete(
                    cluster,
                    session.name,
                    arguments.grace,
                    component=GC_COMPONENT,
                )
                reason = outcome.decision.reason if outcome.decision else "gone meanwhile"
                if outcome.deleted:
                    deleted += 1
                    print(f"deleted       {session.name}: {reason}")
                else:
                    kept += 1
                    print(f"kept          {session.name}: {reason}")
        # Sessions in existing namespaces: their objects and Lease, never the namespace.
        _print_reaped(
            reap_existing(
                cluster, arguments.grace, selector=arguments.selector, dry_run=arguments.dry_run
            )
        )
        # After the namespaces: owners in a namespace just deleted are gone too.
        reaped = reap_cluster_scoped(
            cluster, arguments.grace, selector=arguments.selector, dry_run=arguments.dry_run
        )
        for done in reaped:
            print(f"{done.action:<13} {done.object}: {done.reason}")
    finally:
        cluster.close()
    verb = "would delete" if arguments.dry_run else "deleted"
    print(
        f"gc: {len(sessions)} managed namespaces on {cluster.description}: {verb} {deleted}, "
        f"kept {kept} ({time.monotonic() - started:.1f} s)"
    )
    if reaped:
        objects = sum(done.action.endswith("delete") or done.action == "deleted" for done in reaped)
        print(
            f"gc: {len(reaped)} cluster-scoped objects with dead owners: {verb} {objects}, "
            f"the others are still used by live sessions"
        )
    return 0


def _reap_in(cluster: Cluster, arguments: argparse.Namespace, started: float) -> int:
    """``gc --namespace NAME``: dead sessions in that existing namespace only."""
    from kubefixtures.leases.existing_namespaces import reap_existing

    reaped = reap_existing(
        cluster,
        arguments.grace,
        selector=arguments.selector,
        dry_run=arguments.dry_run,
        namespace=arguments.namespace,
    )
    _print_reaped(reaped)
    print(
        f"gc: {len(reaped)} dead sessions in namespace {arguments.namespace} on "
        f"{cluster.description} ({time.monotonic() - started:.1f} s)"
    )
    return 0


def _print_reaped(reaped: list[ReapedSession]) -> None:
    for gone in reaped:
        verb = "would reap" if gone.dry_run else "reaped"
        what = "its objects" if gone.dry_run else ", ".join(gone.deleted) or "no objects left"
        print(
            f"{verb:<13} session {gone.session} in namespace {gone.namespace} (the namespace "
            f"stays): {gone.reason}; {what}"
        )


def _pool_note(session: SessionNamespace) -> str:
    from kubefixtures.leases.pool import pool_state

    member = pool_state(session.labels)
    return f" (pool {member}, --kubefixtures-pool)" if member else ""


# --- status ------------------------------------------------------------------------------------


def _age(delta: timedelta) -> str:
    seconds = max(int(delta.total_seconds()), 0)
    if seconds < 120:
        return f"{seconds}s"
    if seconds < 7200:
        return f"{seconds // 60}m"
    if seconds < 172800:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d"


def _lease_column(session: SessionNamespace, now: datetime, grace: float) -> str:
    """The Lease's state, and for a pool member (``--kubefixtures-pool``) which one it is:
    a spare copy coming up, or ready to be claimed."""
    from kubefixtures.leases.pool import pool_state

    column = _lease_state(session, now, grace)
    member = pool_state(session.labels)
    return f"{column}; pool {member}" if member else column


def _lease_state(session: SessionNamespace, now: datetime, grace: float) -> str:
    state = lease_state(session, now)
    lease = session.lease
    expires = lease.expires_at if lease is not None else None
    if state is LeaseState.LIVE and expires is not None:
        return f"live ({_age(expires - now)} left)"
    if state is LeaseState.EXPIRED and expires is not None:
        verdict = "leaked" if decide(session, now, grace).delete else "in grace"
        return f"expired {_age(now - expires)} ago ({verdict})"
    if state is LeaseState.MISSING:
        return "missing (leaked)" if decide(session, now, grace).delete else "missing (new)"
    if state is LeaseState.MALFORMED and lease is not None:
        return f"malformed ({lease_problem(lease, now)})"
    return state.value


def _owner(session: SessionNamespace) -> str:
    owner = session.labels.get(USER_LABEL, "?")
    job = session.labels.get(CI_JOB_LABEL)
    return f"{owner} (ci {job})" if job else owner


def _namespace_column(session: SessionNamespace) -> str:
    """The namespace, marked when it is not ours (``--kubefixtures-namespace``): only the
    session's objects in it are ever deleted."""
    existing = session.lease is not None and session.lease.existing_namespace
    return f"{session.name} (existing namespace)" if existing else session.name


def status_rows(
    sessions: Sequence[SessionNamespace], now: datetime, grace: float
) -> list[list[str]]:
    rows = [["NAMESPACE", "OWNER", "HOST", "AGE", "LEASE", "KEEP-UNTIL"]]
    for session in sessions:
        kept = session.kept_until
        rows.append(
            [
                _namespace_column(session),
                _owner(session),
                session.labels.get(HOST_LABEL, "?"),
                _age(now - session.created),
                _lease_column(session, now, grace),
                format_time(kept) if kept else (session.invalid_annotation or "-"),
            ]
        )
    return rows


def run_status(arguments: argparse.Namespace) -> int:
    from kubefixtures.kube.client import Cluster
    from kubefixtures.leases.existing_namespaces import existing_session, list_existing
    from kubefixtures.leases.reaping import list_sessions

    cluster = Cluster.connect_to_read(arguments.kubeconfig, arguments.context)
    try:
        sessions = list_sessions(cluster, arguments.selector)
        # Sessions in namespaces they did not create: found by their Leases alone.
        sessions += [
            existing_session(lease) for lease in list_existing(cluster, arguments.selector)
        ]
    finally:
        cluster.close()
    sessions.sort(key=lambda session: session.name)
    if not sessions:
        print(f"no kubefixtures sessions on {cluster.description}")
        return 0
    rows = status_rows(sessions, cluster.server_clock.wall(), arguments.grace)
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
        )
    return 0


# --- operator ----------------------------------------------------------------------------------


def run_operator(arguments: argparse.Namespace) -> int:
    try:
        from kubefixtures.operator.main import start  # imports kopf
    except ImportError as error:
        return _error(f"the operator needs kopf: pip install 'kubefixtures[operator]' ({error})")
    return start(arguments)
