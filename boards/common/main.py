"""The board's entry point, copied to its filesystem as `main.py` beside `pins.py` (the board's
pin map) and the other files of `boards/common/`."""

import app
import pins

app.main(pins)
