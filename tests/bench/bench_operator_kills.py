"""Benchmark: the operator SIGKILLed over and over while the openai SDK creates and deletes containers.

    python tests/bench/bench_operator_kills.py [--operations 200] [--kills 100] [--workers 4]
        [--delete-share 0.3] [--settle 300]

Starts `kontainers dev` on fake nodes in a temporary state dir, with the operator restarted
whenever it exits (as its Deployment's pod would be; tests/bench/devstack.py). Then `--operations`
SDK calls run on `--workers` threads — creates, and deletes of containers made earlier (about
`--delete-share` of them) — while a killer SIGKILLs the operator's process group at a random
moment 0.2–2.5 s after each restart. Operation i starts only once i × kills/operations kills
happened, so the kills spread over the whole run (≥ `--kills` of them, each during the operations).

Once the operations are done the operator runs unharmed until every container is settled (or
`--settle` seconds), and the script prints:

- kills, operations (creates/deletes), their SDK errors;
- lost: a create answered with an id whose Container is missing or not running, or a delete
  answered whose Container (or pod) is still there;
- duplicated: Containers beyond the answered creates, and Containers with more than one pod;
- events: live Containers whose Events do not hold exactly one `Created` and one `Ready`.

Prints figures; asserts nothing about time. Exits 1 when anything is lost or duplicated, or an
events check fails, so `make bench` shows it.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai

sys.path.insert(0, str(Path(__file__).resolve().parent))
from devstack import DevStack  # noqa: E402

from kontainers.resources import names  # noqa: E402


class Killer(threading.Thread):
    """SIGKILLs the operator a random 0.2–2.5 s after each (re)start, until told to stop."""

    def __init__(self, dev: DevStack, seed: int) -> None:
        super().__init__(daemon=True)
        self.dev, self.random = dev, random.Random(seed)
        self.kills = 0
        self.done = threading.Event()
        self.changed = threading.Condition()

    def run(self) -> None:
        while not self.done.is_set():
            pid = self.dev.operator_pid()
            if pid is None:
                time.sleep(0.05)
                continue
            self.done.wait(self.random.uniform(0.2, 2.5))
            if self.done.is_set():
                return
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                continue
            while self.dev.operator_pid() == pid and not self.done.is_set():
                time.sleep(0.02)  # reaped by kontainers dev, then started again
            with self.changed:
                self.kills += 1
                self.changed.notify_all()

    def wait_for(self, kills: int, timeout: float = 120.0) -> None:
        """Until `kills` kills happened (or `timeout`: an operator that no longer restarts must
        not hang the run; the kill count printed then shows it)."""
        with self.changed:
            self.changed.wait_for(lambda: self.kills >= kills or self.done.is_set(), timeout)


def run(args: argparse.Namespace, work: Path) -> int:
    rng = random.Random(args.seed)
    with DevStack(work, restart_operator=True,
                  env={"KONTAINERS_OPERATOR_LOG_LEVEL": "INFO"}) as dev:
        client = openai.OpenAI(base_url=dev.base_url, api_key=dev.api_key)
        killer = Killer(dev, args.seed)
        created: dict[str, str] = {}  # id -> name, creates answered
        deleted: set[str] = set()  # deletes answered
        statuses = collections.Counter()
        kinds = collections.Counter()
        errors: list[str] = []
        plan = ["delete" if i > 10 and rng.random() < args.delete_share else "create"
                for i in range(args.operations)]
        lock = threading.Lock()
        seq = iter(range(args.operations))

        def operation(i: int) -> None:
            killer.wait_for(i * args.kills // args.operations)
            kind = plan[i]
            with lock:
                victims = sorted(set(created) - deleted - pending_deletes)
                if kind == "delete" and not victims:
                    kind = "create"
                victim = rng.choice(victims) if kind == "delete" else None
                if victim:
                    pending_deletes.add(victim)
                kinds[kind] += 1
            try:
                if kind == "create":
                    name = f"kill-{i}"
                    # Long expiry: a run of 20 min must not see its first containers expire idle.
                    container = client.containers.create(
                        name=name, expires_after={"anchor": "last_active_at", "minutes": 240})
                    with lock:
                        created[container.id] = name
                        statuses[container.status] += 1
                else:
                    client.containers.delete(victim)
                    with lock:
                        deleted.add(victim)
            except openai.OpenAIError as error:
                with lock:
                    errors.append(f"{kind} {victim or ''}: {type(error).__name__}: {error}")

        pending_deletes: set[str] = set()
        started = time.monotonic()
        killer.start()
        with ThreadPoolExecutor(args.workers) as pool:
            list(pool.map(operation, seq))
        killer.done.set()
        killer.join()
        ops_seconds = time.monotonic() - started
        print(f"{killer.kills} operator SIGKILLs during {args.operations} operations "
              f"({kinds['create']} creates, {kinds['delete']} deletes) in {ops_seconds:.0f}s; "
              f"create replies by status {dict(statuses)}; SDK errors {len(errors)}", flush=True)
        for line in errors[:20]:
            print(f"  error: {line}")

        live = set(created) - deleted
        settle_started = time.monotonic()
        report = None
        while True:
            report = inspect(dev, created, deleted)
            if report["settled"] or time.monotonic() - settle_started > args.settle:
                break
            time.sleep(2)
        print(f"settled after {time.monotonic() - settle_started:.0f}s: {report['settled']}")
        print(f"live containers {len(live)}: lost {len(report['lost'])}, duplicated {len(report['duplicated'])}, "
              f"events wrong {len(report['events'])} (each must hold exactly one Created and one Ready)")
        print(f"deleted containers {len(deleted)}: still present {len(report['undeleted'])}")
        for kind in ("lost", "duplicated", "events", "undeleted"):
            for line in report[kind][:20]:
                print(f"  {kind}: {line}")
        restarts = dev.operator_log().read_text(errors="replace").count("### restart ")
        print(f"operator restarts seen by kontainers dev: {restarts}; log {dev.operator_log()}")
        logging_errors = dev.operator_log().read_text(errors="replace").count("--- Logging error ---")
        print(f"'--- Logging error ---' in the operator log: {logging_errors}")
        failed = bool(report["lost"] or report["duplicated"] or report["events"] or report["undeleted"])
        if args.keep and failed:
            print(f"kept for inspection: {work}; stop it with kill -TERM -{dev.proc.pid}")
            input("press Enter to stop kontainers dev ")
        return 1 if failed else 0


def inspect(dev: DevStack, created: dict[str, str], deleted: set[str]) -> dict:
    """What the cluster holds against what the SDK was answered."""
    containers = dev.kubectl_json("get", "containers", "-A")["items"]
    pods = dev.kubectl_json("get", "pods", "-A", "-l", f"{names.LABEL_MANAGED_BY}=kontainers")["items"]
    events = dev.kubectl_json("get", "events", "-A")["items"]
    by_id: dict[str, list[dict]] = collections.defaultdict(list)
    for obj in containers:
        cid = (obj.get("status") or {}).get("id") or obj["metadata"].get("labels", {}).get(names.LABEL_CONTAINER_ID)
        by_id[cid].append(obj)
    pods_by_owner: dict[str, list[str]] = collections.defaultdict(list)
    for pod in pods:
        if pod["metadata"].get("deletionTimestamp"):
            continue
        for ref in pod["metadata"].get("ownerReferences") or []:
            if ref.get("kind") == names.KIND:
                pods_by_owner[ref["uid"]].append(pod["metadata"]["name"])
    reasons: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for event in events:
        involved = event.get("involvedObject") or {}
        if involved.get("kind") == names.KIND:
            reasons[involved.get("uid")][event.get("reason")] += event.get("count") or 1
    lost, duplicated, wrong_events, undeleted = [], [], [], []
    settled = True
    for cid, name in sorted(created.items()):
        objs = by_id.get(cid, [])
        if cid in deleted:
            if objs or any(pods_by_owner.get(o["metadata"]["uid"]) for o in objs):
                undeleted.append(f"{cid} ({name})")
                settled = False
            continue
        if not objs:
            lost.append(f"{cid} ({name}): no Container")
            continue
        obj = objs[0]
        status = (obj.get("status") or {}).get("status")
        owned = pods_by_owner.get(obj["metadata"]["uid"], [])
        if status != "running" or len(owned) != 1:
            settled = False
        if status != "running":
            lost.append(f"{cid} ({name}): status {status}")
        if len(owned) != 1:
            (duplicated if len(owned) > 1 else lost).append(f"{cid} ({name}): pods {owned}")
        counts = reasons.get(obj["metadata"]["uid"], collections.Counter())
        if counts["Created"] != 1 or counts["Ready"] != 1:
            wrong_events.append(f"{cid} ({name}): {dict(counts)}")
            settled = False
    answered_names = set(created.values())
    for obj in containers:
        spec_name = (obj.get("spec") or {}).get("name", "")
        cid = (obj.get("status") or {}).get("id")
        if spec_name.startswith("kill-") and cid not in created:
            duplicated.append(f"{cid} ({spec_name}): a Container no create was answered with"
                              + (" (its name was answered with another id)" if spec_name in answered_names else ""))
    return {"settled": settled, "lost": lost, "duplicated": duplicated, "events": wrong_events,
            "undeleted": undeleted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--operations", type=int, default=200)
    parser.add_argument("--kills", type=int, default=100, help="kills spread over the operations (at least)")
    parser.add_argument("--workers", type=int, default=4, help="SDK calls in flight")
    parser.add_argument("--delete-share", type=float, default=0.3, help="share of operations that are deletes")
    parser.add_argument("--settle", type=float, default=300, help="seconds to wait for the cluster to settle")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--keep", action="store_true", help="on a failure, keep kontainers dev until Enter")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-kills-") as work:
        sys.exit(run(args, Path(work)))


if __name__ == "__main__":
    main()
