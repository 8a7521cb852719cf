"""The Lantern team's handlers: one package per area, each with a registry (``get_handlers``)."""
