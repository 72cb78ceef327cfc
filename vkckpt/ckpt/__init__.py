"""Checkpointing the whole vkernel: snapshot (save), restore (load), the freeze protocol."""
