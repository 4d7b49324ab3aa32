"""Deployment runtime: engines, inference backends, accuracy checks, benchmarks, media I/O."""
