"""The command line's commands: :mod:`govjax.commands.arguments` declares them (light: argparse only), each
``govjax.commands.NAME`` module runs one (``run(args) -> int``: parse, call the library, print)."""
