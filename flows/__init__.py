"""Prefect flows: thin wrappers over rag_health.stages, one flow per stage plus the suite."""
