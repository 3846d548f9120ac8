"""Tests of the built-in step types, each on real files and databases."""
