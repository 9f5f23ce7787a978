"""scalezero: measure always-on, scale-to-zero and keep-warm LLM serving."""

__version__ = "0.1.0"
