"""The embedded local stack: install, supervise and describe every real service."""
