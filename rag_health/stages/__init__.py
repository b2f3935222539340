"""The stages of a health run, one module each: its core function over a Runtime, what it shows people and its
registry entry (rag_health.registry). Prefect flows wrap these and nothing more."""
