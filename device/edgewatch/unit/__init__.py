"""The field unit: its configuration, files, commands and service loop."""
