"""The loop's cadences (the loop itself: tests/test_train.py's run_loop tests)."""

from mann_jax.loop import Periodic


def test_periodic_is_due_every_n_steps_and_on_the_listed_steps():
    due = Periodic(every_steps=4, on_steps=(10,))
    assert [s for s in range(1, 13) if due(s)] == [4, 8, 10, 12]
    assert not any(Periodic()(s) for s in range(1, 20))  # every_steps=0: never
    every_2nd_epoch = Periodic.every_epochs(2, n_batches=3, last_step=9)  # asked at epoch ends
    assert [s for s in (3, 6, 9) if every_2nd_epoch(s)] == [6, 9]
