"""Gateway operations: provisioning bundles and registration, and remote commands (signed by
``command_signing``, queued, published and answered through ``command_queue``; the HTTP routes
are ``central.api.commands``)."""
