import asyncio

import pytest

from fchannel import Event, TransactionError
from tests.channels import FACTORIES


@pytest.fixture(params=sorted(FACTORIES))
def channel(request, tmp_path):
    ch = FACTORIES[request.param](tmp_path)
    yield ch
    ch.close()


def test_async_transactions_commit_rollback_and_take(channel):
    async def main():
        async with channel.atransaction() as tx:
            await tx.put(Event(b"a"))
            await tx.put_batch([Event(b"b"), Event(b"c")])
        with pytest.raises(RuntimeError):
            async with channel.atransaction() as tx:
                await tx.put(Event(b"dropped"))
                raise RuntimeError
        with pytest.raises(RuntimeError):
            async with channel.atransaction() as tx:
                assert (await tx.take()).body == b"a"
                raise RuntimeError      # the take goes back to the head
        async with channel.atransaction() as tx:
            got = await tx.take_batch(10)
        assert [e.body for e in got] == [b"a", b"b", b"c"]
        assert tx.state == "CLOSED"
        tx2 = channel.atransaction()
        with pytest.raises(TransactionError):
            await tx2.commit()

    asyncio.run(main())


def test_blocking_steps_do_not_block_the_loop(channel):
    """While a commit's disk work runs in a thread, other tasks keep running."""
    async def main():
        ticks = 0
        done = asyncio.Event()

        async def ticker():
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0)

        t = asyncio.create_task(ticker())
        for i in range(20):
            async with channel.atransaction() as tx:
                await tx.put_batch(Event(b"%d" % i) for _ in range(10))
        done.set()
        await t
        assert ticks > 20
        assert channel.size == 200

    asyncio.run(main())
