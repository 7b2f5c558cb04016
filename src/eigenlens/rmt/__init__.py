"""eigenlens.rmt."""
