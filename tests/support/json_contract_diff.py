"""Compare two `rag-health run --json` outputs: every key and value, except run ids, timings and paths."""
import json, re, sys

RUN = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")
IGNORED_KEYS = {"timings", "seconds"}

def norm(v, roots):
    if isinstance(v, dict):
        return {k: norm(x, roots) for k, x in v.items() if k not in IGNORED_KEYS}
    if isinstance(v, list):
        return [norm(x, roots) for x in v]
    if isinstance(v, str):
        v = RUN.sub("<run>", v)
        for r, tag in roots:
            v = v.replace(r, tag)
        return v
    return v

def walk(a, b, path, out):
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if k not in a: out.append(f"{path}.{k}: only after"); continue
            if k not in b: out.append(f"{path}.{k}: only before"); continue
            walk(a[k], b[k], f"{path}.{k}", out)
    elif isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b): out.append(f"{path}: length {len(a)} != {len(b)}")
        for i, (x, y) in enumerate(zip(a, b)): walk(x, y, f"{path}[{i}]", out)
    elif a != b:
        out.append(f"{path}: {str(a)[:150]!r} != {str(b)[:150]!r}")

before, after, broot, aroot, bstate, astate = sys.argv[1:7]
a = norm(json.load(open(before)), [(bstate, "<state>"), (broot, "<repo>")])
b = norm(json.load(open(after)), [(astate, "<state>"), (aroot, "<repo>")])
out = []
walk(a, b, "", out)
print(f"{len(out)} differences")
print("\n".join(out[:60]))
