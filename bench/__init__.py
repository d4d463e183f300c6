"""Load and cost measurements of flinks-bff against a bare baseline (`python -m bench.run`)."""
