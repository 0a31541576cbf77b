"""The agent's JSON log (--log-encoding json), for the end-to-end tests:
the connection reports and the --bpf-trace lines, in order."""
import json


def read(path):
    """(reports, trace): the "connection closed" records and the bpf-trace
    messages of the log at path; lines that are not JSON are skipped."""
    reports, trace = [], []
    for line in open(path):
        try:
            o = json.loads(line)
        except ValueError:
            continue
        if o.get("msg") == "connection closed":
            reports.append(o["record"])
        elif o.get("msg", "").startswith("bpf-trace module="):
            trace.append(o["msg"])
    return reports, trace
