"""The live view (`kagi sim run`, `make run`): a whole car on a laptop, driven from a web page.

`kagi sim run` (`tools/sim/cli.py`) starts the sim rig (the cloud with its embedded broker on
SQLite, the I/O board's firmware under MicroPython, the car unit with its nfcpy reader, the demo
fleet), reserves the demo driver Bob a car whose window opens now, and serves a page showing the
car — doors, lock, key box, the reader's LEDs and the hazard lamps live from the board's pins, voice
prompts, trip state and timers, the reservation, the cloud link, mails — with controls to tap a
card, work the doors, key, brake, engine and lights, move the clock, use the phone and cut the
signal. `docs/live.md` shows it.

    car.py      LiveCar: the rig, the demo reservation, the snapshot, the controls (one at a time)
    server.py   the FastAPI app and uvicorn: the page, GET /api/car, POST /api/..., the pin stream
    static/     the page: index.html, live.css, live.js (no build step, nothing from the internet)
"""
