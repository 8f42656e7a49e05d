"""Seed data of the sandbox RunPod: the GPU catalogue (`catalog.json`) and the OpenAPI copy it obeys."""
