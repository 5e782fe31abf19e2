"""The I/O boards: MicroPython code in `common/` (every board), one folder per board (pin map,
board data), `sim/` (the simulated `machine` for the unix port). Importable from CPython only for
the parts written in the common subset (the serial link's framing)."""
