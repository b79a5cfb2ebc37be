"""Probe: schemathesis over the gateway's served OpenAPI document, every check, through the whole product.

    python tests/bench/probe_schemathesis.py [--st .venv-probe/bin/st] [--max-time 600]
        [--max-examples 50] [--workers 2] [--seed 12] [--min-requests 5000] [--keep-reports DIR]

Needs schemathesis, which is not a dependency of the product and does not go into .venv (its
pins may disagree with mitmproxy 11's); give it an environment of its own:

    python3 -m venv .venv-probe && .venv-probe/bin/pip install schemathesis==4.32.5

This script itself runs in .venv: it starts `kontainers dev` on fake nodes in a temporary state
dir (tests/bench/devstack.py), then runs `st run <gateway>/openapi.json --checks all` with the
tenant's key, all phases (examples, coverage, fuzzing, stateful) until `--max-time`, and reads
schemathesis' HAR and JSON reports. It prints:

- requests sent (HAR entries) and the statuses answered, the gateway's own count of requests and
  5xx (kontainers_http_requests_total on its metrics port) beside them;
- every 5xx (method, path, body);
- failures by schemathesis code: ST1xx are the responses that break the document (status,
  content type, schema: the "schema violations"), ST2xx the document's input rules against the
  server's, ST3xx stateful ones (a created resource not found, a deleted one still there);
- ERROR lines and tracebacks of the gateway log.

Not in `make bench` (BENCH_SCRIPTS are tests/bench/bench_*.py): schemathesis is not in .venv.
Without it the script stops at once saying how to install it. Exits 1 on a 5xx or an ST1xx failure.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from devstack import DevStack  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DEFAULT_ST = REPO / ".venv-probe" / "bin" / "st"
INSTALL = "python3 -m venv .venv-probe && .venv-probe/bin/pip install schemathesis==4.32.5"


def gateway_requests(metrics_url: str | None) -> collections.Counter:
    """kontainers_http_requests_total by status code."""
    counts: collections.Counter = collections.Counter()
    if not metrics_url:
        return counts
    with urllib.request.urlopen(metrics_url, timeout=10) as resp:
        for line in resp.read().decode().splitlines():
            if line.startswith("kontainers_http_requests_total{"):
                status = re.search(r'status="(\d+)"', line)
                if status:
                    counts[status.group(1)] += int(float(line.rsplit(" ", 1)[1]))
    return counts


def route_of(url: str) -> str:
    """/v1/containers/cntr_…/files → /v1/containers/{}/files (for counting)."""
    path = urllib.parse.urlsplit(url).path
    parts = path.split("/")
    shape = {"v1", "containers", "files", "content", "skills", "versions", "uploads", "parts", "complete",
             "exec", "cancel", ""}
    return "/".join(p if p in shape else "{}" for p in parts)


def summarize(report_dir: Path, before: collections.Counter, after: collections.Counter,
              gateway_log: Path) -> int:
    har_files = sorted(glob.glob(str(report_dir / "har-*.json")))
    json_files = sorted(glob.glob(str(report_dir / "json-*.json")))
    if not har_files or not json_files:
        print(f"schemathesis wrote no reports into {report_dir}")
        return 1
    entries = json.loads(Path(har_files[-1]).read_text())["log"]["entries"]
    run = json.loads(Path(json_files[-1]).read_text())
    statuses = collections.Counter(e["response"]["status"] for e in entries)
    server_errors = [e for e in entries if e["response"]["status"] >= 500]
    print(f"schemathesis {run['schemathesis_version']}: {len(entries)} requests in {run['running_time']:.0f}s "
          f"({run['test_cases']['generated']} test cases, {run['operations']['tested']}/"
          f"{run['operations']['total']} operations, seed {run['seed']})")
    print(f"  statuses answered: {dict(sorted(statuses.items()))}")
    served = {k: after[k] - before[k] for k in after if after[k] != before[k]}
    print(f"  the gateway's count: {sum(served.values())} requests, "
          f"{sum(v for k, v in served.items() if k.startswith('5'))} 5xx: {dict(sorted(served.items()))}")
    print(f"  5xx: {len(server_errors)}")
    for entry in server_errors[:20]:
        body = (entry["response"].get("content") or {}).get("text", "")[:200]
        print(f"    {entry['request']['method']} {route_of(entry['request']['url'])} → "
              f"{entry['response']['status']}: {body}")
    by_group = collections.Counter()
    for failure in run["failures"]:
        by_group[failure["code"][:3]] += failure["count"]
        print(f"  {failure['code']} {failure['title']}: {failure['count']} ({', '.join(failure['operations'])})")
    schema = by_group["ST1"] - sum(f["count"] for f in run["failures"] if f["code"] == "ST101")
    print(f"  schema violations (ST102–ST111): {schema}; input handling (ST2xx): {by_group['ST2']}; "
          f"stateful (ST3xx): {by_group['ST3']}; errors: {len(run['errors'])}")
    for error in run["errors"][:10]:
        print(f"    error: {json.dumps(error)[:300]}")
    log_text = gateway_log.read_text(errors="replace") if gateway_log.exists() else ""
    bad_lines = [line for line in log_text.splitlines() if '"ERROR"' in line or "Traceback" in line
                 or " ERROR " in line]
    print(f"  gateway log ERROR lines / tracebacks: {len(bad_lines)}")
    for line in bad_lines[:10]:
        print(f"    {line[:300]}")
    return 1 if server_errors or schema else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--st", type=Path, default=Path(os.environ.get("KONTAINERS_PROBE_ST", DEFAULT_ST)),
                        help="the schemathesis CLI (default .venv-probe/bin/st, or $KONTAINERS_PROBE_ST)")
    parser.add_argument("--max-time", type=int, default=600, help="seconds of testing (phases repeat until spent)")
    parser.add_argument("--max-examples", type=int, default=50, help="test cases per operation and phase")
    parser.add_argument("--workers", default="2", help="schemathesis workers (concurrent requests)")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--min-requests", type=int, default=5000, help="fewer requests sent is a failed run")
    parser.add_argument("--keep-reports", type=Path, help="copy schemathesis' reports here")
    args = parser.parse_args()
    if not args.st.is_file() or not os.access(args.st, os.X_OK):
        raise SystemExit(f"{args.st}: no schemathesis CLI. It does not share .venv; install it apart:\n  {INSTALL}\n"
                         "or pass --st / set KONTAINERS_PROBE_ST.")
    with tempfile.TemporaryDirectory(prefix="probe-schemathesis-") as work_dir:
        work = Path(work_dir)
        reports = args.keep_reports or work / "reports"
        reports.mkdir(parents=True, exist_ok=True)
        with DevStack(work) as dev:
            before = gateway_requests(dev.metrics_url)
            command = [str(args.st), "run", f"{dev.origin}/openapi.json", "--checks", "all",
                       "-H", f"Authorization: Bearer {dev.api_key}",
                       "--max-examples", str(args.max_examples), "--max-time", str(args.max_time),
                       "--workers", args.workers, "--seed", str(args.seed), "--request-timeout", "120",
                       "--report", "json,har", "--report-dir", str(reports), "--output-truncate", "true"]
            shown = [("Authorization: Bearer …" if part.startswith("Authorization:") else part) for part in command]
            print("$ " + " ".join(shown), flush=True)
            with (work / "st.out").open("wb") as out:
                code = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT).returncode
            after = gateway_requests(dev.metrics_url)
            print(f"st exited {code}; its output: {reports / 'st.out'}")
            (reports / "st.out").write_bytes((work / "st.out").read_bytes())
            status = summarize(reports, before, after, dev.state / "logs" / "gateway.log")
            sent = len(json.loads(Path(sorted(glob.glob(str(reports / "har-*.json")))[-1]).read_text())["log"]["entries"]) \
                if glob.glob(str(reports / "har-*.json")) else 0
            if sent < args.min_requests:
                print(f"only {sent} requests sent, fewer than --min-requests {args.min_requests}: raise --max-time")
                status = 1
        sys.exit(status)


if __name__ == "__main__":
    main()
