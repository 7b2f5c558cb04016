"""eigenlens.cli."""
