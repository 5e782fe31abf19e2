"""The car <-> cloud contract: topics, message types, signing and card identity."""
