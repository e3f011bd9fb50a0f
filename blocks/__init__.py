"""Prefect block types for llama-prefect (installed as `llama_prefect.blocks`).

No block types exist yet: the runner is configured through its constructor and the
flow run's parameters. Backend settings, the price catalog and the profile store
location will become blocks so that a deployment can switch them without code changes.
"""
