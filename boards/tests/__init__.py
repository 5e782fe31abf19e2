"""Tests of the board room: the real board code under the MicroPython unix port."""
