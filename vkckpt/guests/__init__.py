"""Bundled guest workload programs (C sources) and their builder (:mod:`vkckpt.guests.build`)."""
