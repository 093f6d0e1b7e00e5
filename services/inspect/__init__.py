"""Inspect: finds parts on conveyor frames and scores their defects with three Triton models."""
