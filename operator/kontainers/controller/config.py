"""kopf's own settings for this operator: where it keeps its state, what it watches, peering."""

from __future__ import annotations

import logging
import random
from typing import Any

import kopf

from ..resources import names
from ..settings import OperatorSettings

# kopf's bookkeeping annotations (progress of handlers, last handled spec) live under this prefix.
KOPF_PREFIX = f"operator.{names.GROUP}"
FINALIZER = f"{names.GROUP}/operator"
# Where kopf keeps a handler's progress while it retries (e.g. `operator.kontainers.dev/reconcile`).
PROGRESS_STORAGE = kopf.AnnotationsProgressStorage(prefix=KOPF_PREFIX)


class SpecDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):
    """Only the spec is the "essence" whose changes are updates.

    kopf's default also tracks labels and annotations, so every debounced activity annotation
    from the gateway (and our own `kontainers.dev/id` label) would be an update that kopf answers
    with a second PATCH to remember it.
    """

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> Any:
        essence = super().build(body=body, extra_fields=extra_fields)
        essence.pop("metadata", None)
        return essence


def kopf_settings(settings: OperatorSettings) -> kopf.OperatorSettings:
    ks = kopf.OperatorSettings()
    ks.persistence.progress_storage = PROGRESS_STORAGE
    ks.persistence.diffbase_storage = SpecDiffBaseStorage(prefix=KOPF_PREFIX, key="last-handled-configuration")
    # No handler needs a finalizer (no timers, daemons or mandatory delete handlers); naming it
    # still matters: kopf removes a finalizer of this name that an older version left behind.
    ks.persistence.finalizer = FINALIZER
    # Events on Containers are the ones we post explicitly, plus warnings and errors;
    # not one per successful handler run.
    ks.posting.level = logging.WARNING
    # Pods: only sandbox pods are watched (server-side), never every pod of the cluster.
    ks.watching.label_selectors["v1", "pods"] = ",".join(
        f"{key}={value}" for key, value in {
            names.LABEL_MANAGED_BY: names.MANAGED_BY, names.LABEL_COMPONENT: "sandbox"}.items())
    # Reconnect watches regularly, so a silently dropped connection cannot stall the operator.
    ks.watching.server_timeout = 300
    ks.watching.client_timeout = 330
    # Events of one object arriving within this window are processed together: short, for latency.
    ks.batching.batch_window = 0.05
    ks.peering.name = settings.peering_name
    ks.peering.standalone = settings.standalone
    ks.peering.mandatory = settings.peering_mandatory
    # kopf pauses every operator that sees a live peer of the same or a higher priority; distinct
    # priorities make replicas active/standby instead of all paused.
    ks.peering.priority = (
        settings.peering_priority if settings.peering_priority is not None else random.randint(1, 2**31 - 1))
    ks.peering.lifetime = settings.peering_lifetime
    ks.peering.stealth = True  # no log line per keep-alive
    return ks
