"""Shared test helpers: plain functions and constants imported by the test files (``from helpers.events import
blob_events``); fixtures live in tests/conftest.py. The scripts here (publish_packets.py, pty_keys.py, ...) are also
run as separate processes by the tests."""
