"""The ``edgewatch`` command line: one module per subcommand."""
