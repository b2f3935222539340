"""Compare two `rag-health run --json` outputs key by key and value by value, except run ids, timings and paths.

    python tests/support/json_contract_diff.py BEFORE.json AFTER.json BEFORE_REPO AFTER_REPO BEFORE_STATE AFTER_STATE

Used to show that a reshaping of the code changed nothing a script could see (issue 9's acceptance)."""

import json
import re
import sys

RUN_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")
IGNORED_KEYS = {"timings", "seconds"}


def normalise(value, roots):
    if isinstance(value, dict):
        return {k: normalise(v, roots) for k, v in value.items() if k not in IGNORED_KEYS}
    if isinstance(value, list):
        return [normalise(v, roots) for v in value]
    if isinstance(value, str):
        value = RUN_ID.sub("<run>", value)
        for root, tag in roots:
            value = value.replace(root, tag)
    return value


def differences(a, b, path="", out=None):
    out = [] if out is None else out
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a or k not in b:
                out.append(f"{path}.{k}: only {'after' if k not in a else 'before'}")
            else:
                differences(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            out.append(f"{path}: length {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)):
            differences(x, y, f"{path}[{i}]", out)
    elif a != b:
        out.append(f"{path}: {str(a)[:150]!r} != {str(b)[:150]!r}")
    return out


def main(argv):
    before, after, before_repo, after_repo, before_state, after_state = argv
    a = normalise(json.load(open(before)), [(before_state, "<state>"), (before_repo, "<repo>")])
    b = normalise(json.load(open(after)), [(after_state, "<state>"), (after_repo, "<repo>")])
    found = differences(a, b)
    print(f"{len(found)} differences")
    print("\n".join(found[:60]))
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
