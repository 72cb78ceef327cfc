"""Host-side utilities below every guest object: opens beneath a directory fd, atomic files,
the host-descriptor reserve.  Nothing here knows a guest."""
