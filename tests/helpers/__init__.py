"""What tests share: the service on loopback, raw SIP and RTP sockets, audio checks, log capture,
IVR and queue call steps, sans-IO stack drivers. Test files import from here, never from each
other; real peer drivers live in tests/peers/."""
