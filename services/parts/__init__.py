"""The parts worker: tracking on inspection cameras, one verdict per physical part."""
