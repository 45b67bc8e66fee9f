"""Benchmarks behind ``agensbus bench``: they print numbers, tests never time anything."""
