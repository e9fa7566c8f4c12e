"""CLI command modules. Each module defines ``register(main, bench)`` adding its commands;
heavy imports happen inside the command functions so that ``fraud --help`` stays fast."""
