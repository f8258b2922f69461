"""One module per ``nas`` subcommand; each has ``register(subparsers)``."""
