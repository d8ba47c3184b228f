"""The transaction state machine, on every channel kind."""
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from fchannel import Event, TransactionError
from tests.channels import FACTORIES


@pytest.fixture(params=sorted(FACTORIES))
def channel(request, tmp_path):
    ch = FACTORIES[request.param](tmp_path)
    yield ch
    ch.close()


def ev(i):
    return Event(b"e%d" % i, {"i": str(i)})


def test_explicit_form(channel):
    tx = channel.transaction()
    assert tx.state == "NEW"
    tx.begin()
    assert tx.state == "OPEN"
    tx.put(ev(1))
    tx.commit()
    assert tx.state == "COMPLETED"
    tx.close()
    assert tx.state == "CLOSED"
    assert channel.size == 1


@pytest.mark.parametrize("action", ["put", "take", "commit", "rollback"])
def test_actions_need_open(channel, action):
    tx = channel.transaction()
    args = (ev(0),) if action == "put" else ()
    with pytest.raises(TransactionError, match="NEW"):
        getattr(tx, action)(*args)
    tx.begin()
    tx.commit()
    with pytest.raises(TransactionError, match="COMPLETED"):
        getattr(tx, action)(*args)
    tx.close()
    with pytest.raises(TransactionError, match="CLOSED"):
        getattr(tx, action)(*args)


def test_begin_twice_and_close_rules(channel):
    tx = channel.transaction()
    tx.close()  # NEW -> CLOSED is allowed
    with pytest.raises(TransactionError, match="CLOSED"):
        tx.close()
    tx = channel.transaction()
    tx.begin()
    with pytest.raises(TransactionError, match="OPEN"):
        tx.begin()
    with pytest.raises(TransactionError, match="OPEN"):
        tx.close()
    tx.rollback()
    tx.close()


def test_put_none_and_non_events(channel):
    with channel.transaction() as tx:
        with pytest.raises(TransactionError, match="None"):
            tx.put(None)
        with pytest.raises(TypeError, match="bytes"):
            tx.put(b"raw")
        with pytest.raises(TypeError, match="item 1"):
            tx.put_batch([ev(1), "x"])
        tx.put(ev(2))  # still usable
    assert channel.size == 1


def test_put_or_take_not_both(channel):
    with channel.transaction() as tx:
        tx.put(ev(1))
    with channel.transaction() as tx:
        tx.put(ev(2))
        with pytest.raises(TransactionError, match="either puts or takes"):
            tx.take()
        tx.rollback()
    with channel.transaction() as tx:
        assert tx.take() == ev(1)
        with pytest.raises(TransactionError, match="either puts or takes"):
            tx.put(ev(3))
        with pytest.raises(TransactionError, match="either puts or takes"):
            tx.put_batch([ev(3)])


def test_transaction_capacity(channel):
    cap = channel.transaction_capacity
    with channel.transaction() as tx:
        tx.put_batch(ev(i) for i in range(cap))
        with pytest.raises(TransactionError, match="transaction_capacity"):
            tx.put(ev(-1))
    assert channel.size == cap
    with channel.transaction() as tx:
        with pytest.raises(TransactionError, match="transaction_capacity"):
            tx.take_batch(cap + 1)
        assert len(tx.take_batch(cap)) == cap
        with pytest.raises(TransactionError, match="transaction_capacity"):
            tx.take()


def test_context_manager_commits_rolls_back_and_closes(channel):
    with channel.transaction() as tx:
        tx.put_batch([ev(1), ev(2)])
    assert tx.state == "CLOSED" and channel.size == 2
    with pytest.raises(RuntimeError), channel.transaction() as tx:
        tx.put(ev(3))
        raise RuntimeError("boom")
    assert tx.state == "CLOSED" and channel.size == 2
    with pytest.raises(RuntimeError), channel.transaction() as tx:
        assert tx.take() == ev(1)
        raise RuntimeError("boom")
    with channel.transaction() as tx:
        assert tx.take_batch(5) == [ev(1), ev(2)]
    assert channel.size == 0


def test_failed_commit_can_be_rolled_back(channel):
    tx = channel.transaction()
    tx.begin()
    tx.put(ev(1))
    real = tx._do_commit

    def failing():
        raise OSError("disk on fire")

    tx._do_commit = failing
    with pytest.raises(OSError):
        tx.commit()
    assert tx.state == "OPEN"
    tx._do_commit = real
    tx.rollback()
    tx.close()
    assert channel.size == 0


def test_take_rollback_restores_order_at_head(channel):
    with channel.transaction() as tx:
        tx.put_batch(ev(i) for i in range(10))
    tx = channel.transaction()
    tx.begin()
    assert tx.take_batch(4) == [ev(i) for i in range(4)]
    tx.rollback()
    tx.close()
    with channel.transaction() as tx:
        assert tx.take_batch(10) == [ev(i) for i in range(10)]


def test_take_on_empty_returns_none_and_empty_list(channel):
    with channel.transaction() as tx:
        assert tx.take() is None
        assert tx.take_batch(3) == []
        assert tx.take_batch(0) == []
        tx.put(ev(1))  # nothing was taken, so the transaction may still put
    assert channel.size == 1


class TransactionRules(RuleBasedStateMachine):
    """Random sequences of transaction calls follow the documented rules,
    and the channel's contents follow a simple FIFO model."""

    factory = "memory"

    def __init__(self):
        super().__init__()
        import tempfile
        from pathlib import Path
        self._dir = tempfile.mkdtemp(prefix="fchannel-rules-")
        self.ch = FACTORIES[self.factory](Path(self._dir), capacity=50,
                                          transaction_capacity=5)
        self.model = []      # committed queue contents
        self.tx = None
        self.state = None    # our model of tx state
        self.kind = None
        self.staged = []
        self.taken = []
        self.n = 0

    def teardown(self):
        import shutil
        self.ch.close()
        shutil.rmtree(self._dir, ignore_errors=True)

    @rule()
    def new(self):
        if self.tx is not None and self.state == "OPEN":
            return
        self.tx = self.ch.transaction()
        self.state, self.kind, self.staged, self.taken = "NEW", None, [], []

    @precondition(lambda self: self.tx is not None)
    @rule()
    def begin(self):
        if self.state != "NEW":
            with pytest.raises(TransactionError, match=self.state):
                self.tx.begin()
        else:
            self.tx.begin()
            self.state = "OPEN"

    @precondition(lambda self: self.tx is not None)
    @rule()
    def put(self):
        e = ev(self.n)
        self.n += 1
        if self.state != "OPEN" or self.kind == "take" or len(self.staged) >= 5 \
                or len(self.model) + len(self.staged) >= 50:
            if self.state == "OPEN" and len(self.model) + len(self.staged) >= 50 \
                    and self.kind != "take" and len(self.staged) < 5:
                return  # would only fail at commit on capacity; keep the model simple
            with pytest.raises(TransactionError):
                self.tx.put(e)
        else:
            self.tx.put(e)
            self.staged.append(e)
            self.kind = "put"

    @precondition(lambda self: self.tx is not None)
    @rule(n=st.integers(0, 3))
    def take(self, n):
        if self.state != "OPEN" or self.kind == "put" or len(self.taken) + n > 5:
            with pytest.raises(TransactionError):
                self.tx.take_batch(n)
        else:
            got = self.tx.take_batch(n)
            want = self.model[:n]
            del self.model[:n]
            assert got == want
            self.taken.extend(got)
            if got:
                self.kind = "take"

    @precondition(lambda self: self.tx is not None)
    @rule()
    def commit(self):
        if self.state != "OPEN":
            with pytest.raises(TransactionError, match=self.state):
                self.tx.commit()
            return
        self.tx.commit()
        self.model.extend(self.staged)
        self.state = "COMPLETED"

    @precondition(lambda self: self.tx is not None)
    @rule()
    def rollback(self):
        if self.state != "OPEN":
            with pytest.raises(TransactionError, match=self.state):
                self.tx.rollback()
            return
        self.tx.rollback()
        self.model[:0] = self.taken
        self.state = "COMPLETED"

    @precondition(lambda self: self.tx is not None)
    @rule()
    def close(self):
        if self.state in ("OPEN", "CLOSED"):
            with pytest.raises(TransactionError, match=self.state):
                self.tx.close()
        else:
            self.tx.close()
            self.state = "CLOSED"

    @invariant()
    def size_matches(self):
        if self.state != "OPEN":
            assert self.ch.size == len(self.model)
        if self.tx is not None:
            assert self.tx.state == self.state


TransactionRules.TestCase.settings = settings(max_examples=60, stateful_step_count=30,
                                             deadline=None)
test_transaction_rules_memory = TransactionRules.TestCase


class FileTransactionRules(TransactionRules):
    factory = "file"


FileTransactionRules.TestCase.settings = settings(max_examples=25, stateful_step_count=30,
                                                 deadline=None)
test_transaction_rules_file = FileTransactionRules.TestCase
