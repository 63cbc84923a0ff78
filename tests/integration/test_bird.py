"""Bird: recorded requests are cases in tests/fixtures/providers/bird/; here, what a case cannot say:
the receiving number written into the logged event from ``channel_numbers``."""

from __future__ import annotations

import json

from ingress_server import StartIngress
from samples import BIRD

CHANNEL = BIRD["payload"]["channelId"]


async def test_the_channels_number_is_written_where_bird_would_send_it(start_ingress: StartIngress) -> None:
    ingress = await start_ingress(ingress={"bird": {"channel_numbers": {CHANNEL: "+3197010254321"}}})
    status, _, _ = await ingress.post("/inbound/bird", json=BIRD)
    assert status == 200
    [event] = ingress.events()
    logged = json.loads(event.body)
    assert logged["payload"]["receiver"]["connector"] == {
        "id": "86cc4dc0-3dc0-41b7-ac43-8ec829ead56f",
        "identifierValue": "+3197010254321",
    }
    assert {**logged, "payload": {**logged["payload"], "receiver": BIRD["payload"]["receiver"]}} == BIRD
    assert event.key == "bird:+31612345678:+3197010254321"


async def test_a_number_bird_sends_is_kept_over_the_setting(start_ingress: StartIngress) -> None:
    ingress = await start_ingress(ingress={"bird": {"channel_numbers": {CHANNEL: "+3197010254321"}}})
    sent = {**BIRD, "payload": {**BIRD["payload"], "receiver": {"connector": {"identifierValue": "+3197000000000"}}}}
    status, _, _ = await ingress.post("/inbound/bird", json=sent)
    assert status == 200
    [event] = ingress.events()
    assert json.loads(event.body) == sent
