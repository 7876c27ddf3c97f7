from gald import train


def test_smoke_run_loss_falls():
    args = train.get_args_parser().parse_args(["--steps", "12", "--height", "48", "--width", "64"])
    result = train.main(args)
    assert result["last_loss"] < 0.9 * result["first_loss"]
