"""Board code that runs on every board; the link framing also runs on the host."""
