"""faust's aiokafka transport, reading committed data only.

faust sets the consumer's isolation level from its processing guarantee: read_committed only under
exactly_once, which we cannot use (aiokafka #1004: its transactional offset commit fails on
Kafka >= 3.7). Under at_least_once it reads read_uncommitted, and would then see the votes and
decisions of the pipeline's *aborted* Kafka transactions. Every pipeline worker writes
transactionally, so the tracker must read committed data: this is the one setting we change.
"""
from __future__ import annotations

import faust
from faust.transport.drivers import aiokafka as driver


class _ReadCommittedThread(driver.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport):
        consumer = super()._create_worker_consumer(transport)
        # aiokafka builds its fetcher from this attribute in start(), which has not run yet
        consumer._isolation_level = "read_committed"
        return consumer


class _Consumer(driver.Consumer):
    def _new_consumer_thread(self):
        return _ReadCommittedThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(driver.Transport):
    Consumer = _Consumer


class ReadCommittedApp(faust.App):
    """A faust.App whose consumer reads only committed transactions."""

    def _new_transport(self):
        return _Transport(self.conf.broker_consumer, self)
