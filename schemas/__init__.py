"""Avro schemas of every event on the log (shipped in the wheel as ``smsroute.schemas``)."""
