"""SMPP 3.4 for the ESME side: the PDU codec (:mod:`.pdu`), an asyncio session that binds to an
SMSC and answers each PDU when told (:mod:`.session`), and a bind's settings (:mod:`.config`).
The ingress runs the binds (:mod:`smsroute.ingress.smpp`); the ``smpp`` provider reads the logged
PDUs (:mod:`smsroute.providers.smpp`)."""
