"""Real SIP peers for end-to-end tests: sipp, pjsua2, pyVoIP, baresip and linphone-cli handsets."""
