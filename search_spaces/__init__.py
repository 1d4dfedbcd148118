"""Declarative design spaces and their compilation into candidates and constraints."""
