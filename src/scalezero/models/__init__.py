"""Model files: GGUF header reader, fetching and verifying, synthetic models."""
