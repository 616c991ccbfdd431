"""Trusted evaluation of submissions."""
