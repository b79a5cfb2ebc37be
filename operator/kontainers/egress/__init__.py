"""The egress proxy of allowlist sandboxes, and what the operator needs to wire them to it.

Proxy (`kontainers egress`, needs the `egress` extra: mitmproxy): main → addon (the checks and the
placeholder swap) over registry (who is connecting) fed by watch (Container resources), resolver
(pinned, public-only DNS) and ca (the per-install CA). Pure rules: domains, policy, placeholders.
Operator side (no mitmproxy): operator_hook, sandbox (pod additions), cilium (the CNI mode).
"""
