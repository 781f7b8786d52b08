"""Keys, signatures and sealing: thin, typed wrappers over ``cryptography``."""
