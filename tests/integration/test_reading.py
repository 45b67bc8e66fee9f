"""Reading a topic whole on the real broker: every record up to the end, and a topic that
does not exist yet when the read starts (as on a cluster right after it was created) is
waited for rather than failing the reader."""

import asyncio

import pytest

from services.runtime.reading import Record, read_to_end
from services.runtime.settings import Settings
from tests.integration.support_broker import create_topic, produce, run, unique

pytestmark = pytest.mark.integration


def test_a_topic_created_after_the_read_starts_is_read_whole(kafka_bootstrap: str) -> None:
    topic = unique("reading")
    settings = Settings(kafka_bootstrap=kafka_bootstrap)
    items = [(f"k{i}".encode(), f"v{i}".encode()) for i in range(5)]
    seen: list[Record] = []

    async def scenario() -> None:
        reading = asyncio.create_task(read_to_end(settings, topic, seen.append, timeout_s=60))
        await asyncio.sleep(1.0)
        assert not reading.done(), "the read gave up on a topic that is not there yet"
        await create_topic(kafka_bootstrap, topic, partitions=2)
        await produce(kafka_bootstrap, topic, items)
        await reading

    run(scenario())
    assert sorted((r.key, r.value) for r in seen) == sorted(items)


def test_a_topic_that_never_appears_ends_the_read_at_its_deadline(kafka_bootstrap: str) -> None:
    settings = Settings(kafka_bootstrap=kafka_bootstrap)
    with pytest.raises(TimeoutError):
        run(read_to_end(settings, unique("missing"), lambda _: None, timeout_s=2))
