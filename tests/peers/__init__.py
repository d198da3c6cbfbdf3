"""Real SIP peers for end-to-end tests: sipp, a pjsua2 handset and a pyVoIP handset."""
