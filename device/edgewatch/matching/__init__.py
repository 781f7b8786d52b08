"""Matching: the gallery of enrolled templates and the match/unknown decision."""
