"""The car unit: decides everything about one car, offline-first."""
