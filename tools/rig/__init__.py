"""The HIL rig: its protocols (`protocols.py`), its files (`rigfile.py`, `rigs/`), the car's
language over them (`car.py`), the parts every rig runs alike (the cloud and the car unit as
processes, the signal relay, the phone, the mailbox, the clock) and a real bench's drivers
(`real.py`). The simulated car's own drivers are in `tools/sim/`."""
