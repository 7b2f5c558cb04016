"""eigenlens.diagnostics."""
