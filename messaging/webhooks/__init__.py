"""Provider webhooks: parse each provider's body into the normalized events of `events_in`."""
