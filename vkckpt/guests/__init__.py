"""Bundled guest workload programs (C and Go sources) and their builder
(:mod:`vkckpt.guests.build`, Go through :mod:`vkckpt.guests.gobuild`)."""
