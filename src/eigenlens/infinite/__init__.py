"""eigenlens.infinite."""
