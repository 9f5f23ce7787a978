"""The serverless gateway: an OpenAI-compatible front that starts and stops llama.cpp
instances according to a strategy's policy.

Modules, one job each: ``events`` (the lifecycle record), ``launcher`` (one instance
process), ``pool`` (instance states and the activator queue), ``app`` (HTTP routes and
proxying), ``upstream`` (the HTTP client for the hop to instances), ``prom`` (Prometheus
metrics), ``cli`` (``scalezero serve``).
"""
