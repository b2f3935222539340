"""Pure checks: data in, a frozen CheckResult out. No I/O, no Prefect, no clients."""

from checks.result import CheckResult, Status, worst

__all__ = ["CheckResult", "Status", "worst"]
