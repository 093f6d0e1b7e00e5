"""The objects worker: detect cameras' tracked objects against their detect rules."""
