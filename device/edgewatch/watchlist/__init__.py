"""Encrypted, signed, expiring watch-lists: the file format, issuing, loading on a device."""
