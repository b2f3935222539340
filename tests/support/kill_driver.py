"""Run one ingest in this process and SIGKILL it at a chosen point: `python -m tests.support.kill_driver DOCS STATE
METHOD N` kills the process when ChunkIndex.METHOD is entered for the N-th time (METHOD "none": no kill). The
injection is test code: it wraps the store's methods from outside; nothing in rag_health knows about it.

METHOD "reference": no ingest; open the runtime on STATE (an indexed state), chunk every document at DOCS and embed
every chunk text stored there: the same parsing, chunking and model work (and their libraries' imports) without the
ingest's bookkeeping. Its peak RSS is what an ingest's peak is judged against, measured on the same machine
(absolute figures differ between machines by hundreds of MB)."""

import os
import resource
import signal
import sys

from rag_health.registry import stages
from rag_health.runtime import build_runtime
from rag_health.settings import load_settings
from rag_health.store import ChunkIndex


def peak_mb() -> int:
    """This process's own peak RSS: VmHWM, which exec starts afresh. ru_maxrss is not: Linux carries the forking
    parent's high-water mark across exec, so a child of a large pytest process reports the parent's size."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) // 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def reference(docs: str, state: str) -> None:
    from pathlib import Path

    from rag_health.documents import DocumentError, is_supported, parse_document

    rt = build_runtime(load_settings(docs=docs, state_dir=state, write_batch_chunks=4))
    root = Path(docs)
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        doc_id = path.relative_to(root).as_posix()
        if is_supported(doc_id):
            try:
                rt.chunker.split(parse_document(doc_id, path.read_bytes()))
            except DocumentError:
                continue
    texts = [r.text for records, _ in rt.index.iter_chunks() for r in records]
    rt.embedder.embed(texts)
    print(f"chunks={len(texts)} peak_mb={peak_mb()}")


def main(docs: str, state: str, method: str, nth: int) -> None:
    if method == "reference":
        return reference(docs, state)
    if method != "none":
        real = getattr(ChunkIndex, method)
        calls = {"n": 0}

        def dying(self, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == nth:
                os.kill(os.getpid(), signal.SIGKILL)
            return real(self, *args, **kwargs)

        setattr(ChunkIndex, method, dying)
    rt = build_runtime(load_settings(docs=docs, state_dir=state, write_batch_chunks=4))
    result = stages()["ingest"].run(rt)
    print(f"errors={len(result.errors)} peak_mb={peak_mb()}")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
