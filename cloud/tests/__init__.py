"""Tests of the cloud room."""
