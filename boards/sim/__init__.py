"""The simulated board: a `machine` for the MicroPython unix port and the rig around it."""
