"""The Unicorn boundary: engines, registers, hooks and preemption."""
