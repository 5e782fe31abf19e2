"""The simulated car (`kagi sim run`, `make run`): the sim rig's own drivers (the I/O board's
firmware under MicroPython, the hand at the emulated reader), the sim rig built on the parts
every local rig runs (`tools/rig/`), and the live view to drive it in the browser. Ships in the
wheel; `pip install 'kagi[sim]'` brings what it runs."""
