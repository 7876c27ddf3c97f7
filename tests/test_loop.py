"""gald.engine.loop: the loss meter and the non-finite-loss error shared by both training loops."""

from gald.engine.loop import LossMeter, non_finite_stop


def test_loss_meter_means_since_the_last_pop():
    meter = LossMeter()
    meter.update({"loss": 1.0, "aux": 0.5})
    meter.update({"loss": 3.0, "aux": 1.5})
    assert meter.pop() == {"loss": 2.0, "aux": 1.0}
    meter.update({"loss": 5.0})
    assert meter.pop() == {"loss": 5.0}


def test_non_finite_stop_names_step_lr_and_the_kept_checkpoint():
    err = non_finite_stop(ValueError("non-finite loss: loss=nan"), 7, 0.00123, "runs/x/last.pt")
    assert str(err) == ("stopping at step 7: non-finite loss: loss=nan; lr=0.00123. "
                        "The last good checkpoint (runs/x/last.pt) was left untouched.")
