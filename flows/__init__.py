"""Prefect flows of rag-health (thin: the work is in rag_health/ and checks/)."""

import logging


class _VerdictIsNotACrash(logging.Filter):
    """A rag-health run that ends Failed on its verdict has said why in its state message and its own log line.
    Prefect's engine, running the flow under a worker, then re-raises that Failed state and logs "Engine execution
    exited with unexpected exception" with a traceback of its own frames: drop exactly that record, for exactly
    our failures (prefect.exceptions.FailedRun whose message is ours). A real crash is still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (record.getMessage() == "Engine execution exited with unexpected exception"
                    and type(exc).__name__ == "FailedRun" and str(exc).startswith("rag-health "))


_filter = _VerdictIsNotACrash()
for _name in ("prefect.flow_runs", "prefect.flow_engine"):
    if not any(isinstance(f, _VerdictIsNotACrash) for f in logging.getLogger(_name).filters):
        logging.getLogger(_name).addFilter(_filter)
