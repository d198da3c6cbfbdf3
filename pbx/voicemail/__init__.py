"""Voicemail kept safe: messages encrypted to the staff's public key (age), deleted after the
retention period, announced without caller data. See `store` (files), `desk` (the running
service's side) and `notify` (the hook)."""
