"""Demo traffic: simulated callers and volunteers that talk real SIP and RTP to the service."""
