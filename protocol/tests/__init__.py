"""Tests of the car <-> cloud contract."""
