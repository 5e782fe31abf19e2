"""The HIL rig and the end-to-end scenarios (see rig.py; rigs/ holds the rig files)."""
