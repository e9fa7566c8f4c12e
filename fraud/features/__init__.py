"""Feature components (tabular windows, graph, sequence). See ``fraud.features.base``."""
