"""Workflows: definitions (YAML or Python), their validation, and the durable engine."""
