"""Guest file-system view: the guest-root sandbox and path resolution."""
