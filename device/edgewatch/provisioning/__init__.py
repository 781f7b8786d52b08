"""Provisioning: a unit's first-boot keys and request, the back office's fleet, the bundle."""
