"""faust's aiokafka transport, fixed for reading transactional topics.

faust sets the consumer's isolation level from its processing guarantee: read_committed only under
exactly_once, which we cannot use (aiokafka #1004: its transactional offset commit fails on
Kafka >= 3.7). Under at_least_once it reads read_uncommitted, and would then see the votes and
decisions of *aborted* Kafka transactions. The workers no longer write in transactions, but
topics written before hold aborted records and commit markers, and another producer may still
write transactionally: the tracker reads committed data only.

Read committed, a partition's offsets have holes (each transaction's commit marker, aborted
records), and faust 0.15.3's offset commit stalls on them: `Consumer._new_offset` merges the
recorded holes into the acked offsets *with* the offset of the message after each hole, which is
acked already; the duplicate ends `consecutive_numbers`, so each commit (every 2.8 s) advances
past one hole only. Measured before this fix: tx.log committed offsets stuck at ~40 of ~650 after
600 orders, so a restart would refold nearly everything and the group's lag never falls.
"""

from __future__ import annotations

import faust
from aiokafka import AIOKafkaConsumer
from faust.transport.drivers import aiokafka as driver
from faust.types import TP
from faust.types.transports import TransportT


class _ReadCommittedThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: driver.Transport) -> AIOKafkaConsumer:
        consumer = super()._create_worker_consumer(transport)
        # aiokafka builds its fetcher from this attribute in start(), which has not run yet
        consumer._isolation_level = "read_committed"
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self) -> driver.AIOKafkaConsumerThread:
        return _ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: TP) -> int | None:
        # fill the holes below the highest acked offset ourselves, without duplicates; faust's
        # own merge then finds nothing left to merge and commits the whole consecutive run
        acked, holes = self._acked[tp], self._gap[tp]
        if acked and holes:
            top = max(acked)
            filled = {
                o for iv in holes.overlap(0, top + 1) for o in range(iv.begin, iv.end) if o <= top
            }
            holes.chop(0, top + 1)
            acked[:] = sorted(set(acked) | filled)
        return super()._new_offset(tp)


class _Transport(driver.Transport):
    Consumer = _Consumer


class ReadCommittedApp(faust.App):
    """A faust.App whose consumer reads only committed transactions."""

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)
