"""eigenlens.nn."""
